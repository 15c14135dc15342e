"""OpenAPI schema, Swagger UI served with its own assets (no CDN), and the health probes."""

import json
import re
from urllib.parse import urlsplit

import pytest
import yaml

from tests.kafka import free_port

API_PATHS = [
    "/api/v1/lotteries/{lottery_id}/ballots",
    "/api/v1/lotteries/{lottery_id}/close",
    "/api/v1/winners",
    "/api/v1/draws/{draw_id}/verification",
]


def _body(response) -> bytes:
    return b"".join(response.streaming_content) if response.streaming else response.content


def _asset_urls(html: str) -> list[str]:
    """Every script src and link href of the page."""
    return re.findall(r'<script[^>]*\ssrc="([^"]+)"', html) + re.findall(r'<link[^>]*\shref="([^"]+)"', html)


@pytest.mark.django_db
def test_schema_is_an_openapi_3_document_listing_the_main_paths(client):
    # when the schema is fetched (YAML by default)
    response = client.get("/api/schema/")

    # then it is OpenAPI 3 and documents the ballot, close, winners and verification paths
    assert response.status_code == 200
    document = yaml.safe_load(_body(response))
    assert document["openapi"].startswith("3.")
    assert document["info"]["title"] == "Lottery platform API"
    for path in API_PATHS:
        assert path in document["paths"], path
    assert "post" in document["paths"]["/api/v1/lotteries/{lottery_id}/ballots"]
    assert "post" in document["paths"]["/api/v1/lotteries/{lottery_id}/close"]
    assert "get" in document["paths"]["/api/v1/winners"]
    assert "get" in document["paths"]["/api/v1/draws/{draw_id}/verification"]


@pytest.mark.django_db
def test_schema_is_available_as_json(client):
    response = client.get("/api/schema/", {"format": "json"})

    assert response.status_code == 200
    document = json.loads(_body(response))
    assert document["openapi"].startswith("3.")
    assert set(API_PATHS) <= set(document["paths"])


@pytest.mark.django_db
def test_schema_documents_the_winners_date_parameter_and_idempotency_header(client):
    document = yaml.safe_load(_body(client.get("/api/schema/")))

    winners_params = {
        (p["name"], p["in"], p.get("required", False))
        for p in document["paths"]["/api/v1/winners"]["get"]["parameters"]
    }
    ballot_params = {
        p["name"]: p["in"] for p in document["paths"]["/api/v1/lotteries/{lottery_id}/ballots"]["post"]["parameters"]
    }
    assert ("date", "query", True) in winners_params
    assert ballot_params["Idempotency-Key"] == "header"


@pytest.mark.django_db
def test_swagger_ui_uses_assets_served_by_the_app_not_a_cdn(client):
    # when the docs page is fetched
    response = client.get("/api/docs/")

    # then it is Swagger UI whose scripts and styles all come from /static/ on this host,
    # but for its start-up script, which the docs view itself serves
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    html = _body(response).decode()
    assert 'id="swagger-ui"' in html
    assets = _asset_urls(html)
    scripts = re.findall(r'<script[^>]*\ssrc="([^"]+)"', html)
    assert len(scripts) >= 2
    assert any("swagger-ui-bundle" in url for url in scripts)
    for url in assets:
        assert not re.match(r"^(https?:)?//", url), f"asset from another host: {url}"
        assert urlsplit(url).path.startswith("/static/") or url == "/api/docs/?script=", url
    assert not re.search(r"""src=["']https?://""", html)
    assert "cdn.jsdelivr" not in html
    assert "unpkg.com" not in html


@pytest.mark.django_db
def test_swagger_ui_assets_are_served_by_the_app(client):
    # given the asset URLs of the docs page
    html = _body(client.get("/api/docs/")).decode()
    assets = _asset_urls(html)
    bundle = next(url for url in assets if "swagger-ui-bundle" in url and url.endswith(".js"))
    css = next(url for url in assets if url.endswith(".css"))

    # when they are fetched from the app itself
    bundle_response = client.get(bundle)
    css_response = client.get(css)

    # then they are served, with content
    assert bundle_response.status_code == 200
    assert "javascript" in bundle_response["Content-Type"]
    bundle_body = _body(bundle_response)
    assert len(bundle_body) > 10_000
    assert b"SwaggerUIBundle" in bundle_body
    assert css_response.status_code == 200
    assert css_response["Content-Type"].startswith("text/css")
    assert len(_body(css_response)) > 1_000


@pytest.mark.django_db
def test_every_asset_of_the_docs_page_is_served(client):
    html = _body(client.get("/api/docs/")).decode()

    statuses = {url: client.get(url).status_code for url in _asset_urls(html)}

    assert statuses
    assert set(statuses.values()) == {200}, statuses


def test_liveness_probe_is_200(client):
    response = client.get("/health/live")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.django_db
def test_readiness_probe_checks_database_redis_and_kafka(client, kafka_broker):
    response = client.get("/health/ready")

    assert response.status_code == 200
    assert response.json() == {"status": "ok", "checks": ["database", "kafka", "redis"]}


@pytest.mark.django_db
def test_readiness_probe_is_503_naming_each_failed_check(client, settings, kafka_broker):
    # given nothing answers where Redis and Kafka are said to be
    closed = free_port()
    settings.REDIS_URL = f"redis://127.0.0.1:{closed}/0"
    settings.KAFKA_BOOTSTRAP_SERVERS = [f"127.0.0.1:{closed}"]

    # when readiness is probed
    response = client.get("/health/ready")

    # then it says which dependencies failed, and the database is not among them
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert set(body["failed"]) == {"redis", "kafka"}
    assert "ConnectionError" in body["failed"]["redis"]
    assert "127.0.0.1" not in response.content.decode()  # details go to the log only
