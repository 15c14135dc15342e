"""OpenAPI schema, Swagger UI served with its own assets (no CDN), and the health probes."""

import json
import re
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from rest_framework.authtoken.models import Token

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
    body = response.json()
    assert (body["status"], body["checks"]) == ("ok", ["database", "kafka", "redis"])
    assert body["pipeline"]["status"] in ("ok", "degraded")  # the event pipeline's own section (tests/outbox)


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


# --- The document is exact ---------------------------------------------------

OPERATIONS = [
    ("post", "/api/v1/auth/token"),
    ("get", "/api/v1/ping"),
    ("get", "/api/v1/lotteries"),
    ("get", "/api/v1/lotteries/{lottery_id}"),
    ("post", "/api/v1/lotteries/{lottery_id}/close"),
    ("post", "/api/v1/lotteries/{lottery_id}/ballots"),
    ("get", "/api/v1/lotteries/{lottery_id}/winners"),
    ("get", "/api/v1/ballots"),
    ("get", "/api/v1/me/notifications"),
    ("put", "/api/v1/me/notifications"),
    ("post", "/api/v1/stakes"),
    ("post", "/api/v1/drops"),
    ("post", "/api/v1/awards/{award_id}/claim"),
    ("get", "/api/v1/winners"),
    ("get", "/api/v1/draws/{draw_id}"),
    ("get", "/api/v1/draws/{draw_id}/verification"),
    ("get", "/api/v1/stats"),
    ("get", "/api/v1/loadgen/anomalies"),
    ("post", "/api/v1/loadgen/anomalies"),
    ("get", "/api/v1/loadgen/chaos"),
    ("post", "/api/v1/loadgen/players"),
    ("post", "/api/v1/loadgen/trigger"),
    ("get", "/api/v1/metrics/hourly"),
    ("get", "/api/v1/metrics/daily"),
    ("get", "/api/v1/metrics/reconciliation"),
]
ERROR_REF = {"$ref": "#/components/schemas/Error"}


def _document(client, **headers) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(_body(client.get("/api/schema/", {"format": "json"}, **headers)))
    return document


def _resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


@pytest.fixture
def document(client) -> dict[str, Any]:
    return _document(client)


def test_schema_generation_has_no_warnings_so_no_two_serializers_share_a_component(tmp_path):
    # drf-spectacular warns when two serializers would get one component name (and on every other doubt)
    from django.core.management import call_command

    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "schema.yaml"))

    assert (tmp_path / "schema.yaml").stat().st_size > 0


@pytest.mark.django_db
def test_stakes_and_close_each_document_their_own_body_and_response(document):
    def body(method, path, status):
        operation = document["paths"][path][method]
        request = _resolve(document, operation["requestBody"]["content"]["application/json"]["schema"])
        response = _resolve(document, operation["responses"][status]["content"]["application/json"]["schema"])
        return set(request["properties"]), set(response["properties"])

    assert body("post", "/api/v1/stakes", "202") == (
        {"stakeId", "playerId", "gameId", "amount", "currency", "occurredAt"},
        {"stakeId", "topic", "partition", "offset"},
    )
    assert body("post", "/api/v1/lotteries/{lottery_id}/close", "200") == ({"force"}, {"lottery", "changed"})
    drop_terms, drop = body("post", "/api/v1/drops", "201")
    assert drop_terms == {
        "title", "prize", "prize_quantity", "opens_at", "closes_at", "winners_count", "alternates_count"
    }  # fmt: skip
    assert {"id", "state", "prize_quantity", "seed_commitment", "transitions", "unawarded_quantity"} <= drop
    assert document["paths"]["/api/v1/stakes"]["post"]["requestBody"]["required"] is True


@pytest.mark.django_db
def test_the_error_component_is_the_one_error_shape_with_every_stable_code(document):
    from core.api import _DRF_CODES, STATUS_CODES
    from core.errors import ApplicationError

    def subclasses(klass):
        return [klass, *(sub for child in klass.__subclasses__() for sub in subclasses(child))]

    error = document["components"]["schemas"]["Error"]
    inner = error["properties"]["error"]

    assert error["required"] == ["error"]
    assert set(inner["required"]) == {"code", "message", "details"}
    assert inner["properties"]["message"]["type"] == "string"
    assert inner["properties"]["details"]["type"] == "object"
    codes = set(inner["properties"]["code"]["enum"])
    assert {klass.code for klass in subclasses(ApplicationError)} <= codes
    assert set(_DRF_CODES.values()) <= codes
    assert set(STATUS_CODES.values()) <= codes
    assert {"request_too_large", "malformed_request", "throttled", "player_banned", "idempotency_key_reused"} <= codes


# The error statuses each operation can give: what the views and the plumbing really do (413 for any body
# over the limit, whatever the method: the middleware refuses it before routing).
EXPECTED_ERRORS = {
    ("post", "/api/v1/auth/token"): {400, 406, 413, 415, 429},
    ("get", "/api/v1/ping"): {401, 406, 413, 429},
    ("get", "/api/v1/lotteries"): {400, 401, 404, 406, 413, 429},
    ("get", "/api/v1/lotteries/{lottery_id}"): {401, 404, 406, 413, 429},
    ("post", "/api/v1/lotteries/{lottery_id}/close"): {400, 401, 403, 404, 406, 409, 413, 415, 429},
    ("post", "/api/v1/lotteries/{lottery_id}/ballots"): {400, 401, 403, 404, 406, 409, 413, 422, 429},
    ("get", "/api/v1/lotteries/{lottery_id}/winners"): {400, 401, 404, 406, 413, 429},
    ("get", "/api/v1/ballots"): {400, 401, 404, 406, 413, 429},
    ("get", "/api/v1/me/notifications"): {401, 406, 413, 429},
    ("put", "/api/v1/me/notifications"): {400, 401, 403, 406, 409, 413, 415, 429},
    ("post", "/api/v1/stakes"): {400, 401, 403, 406, 413, 415, 429, 503},
    ("post", "/api/v1/drops"): {400, 401, 403, 406, 413, 415, 422, 429},
    ("post", "/api/v1/awards/{award_id}/claim"): {401, 403, 404, 406, 409, 413, 429},
    ("get", "/api/v1/winners"): {400, 401, 404, 406, 413, 429},
    ("get", "/api/v1/draws/{draw_id}"): {401, 404, 406, 413, 429},
    ("get", "/api/v1/draws/{draw_id}/verification"): {401, 404, 406, 413, 429},
    ("get", "/api/v1/stats"): {400, 401, 404, 406, 413, 429, 506},
    ("get", "/api/v1/loadgen/anomalies"): {400, 401, 403, 404, 406, 413, 429},
    ("post", "/api/v1/loadgen/anomalies"): {400, 401, 403, 404, 406, 409, 413, 415, 429},
    ("get", "/api/v1/loadgen/chaos"): {401, 403, 406, 413, 429},
    ("post", "/api/v1/loadgen/players"): {400, 401, 403, 406, 413, 415, 429},
    ("post", "/api/v1/loadgen/trigger"): {400, 401, 403, 406, 413, 415, 429},
    ("get", "/api/v1/metrics/hourly"): {400, 401, 403, 404, 406, 413, 429},
    ("get", "/api/v1/metrics/daily"): {400, 401, 403, 404, 406, 413, 429},
    ("get", "/api/v1/metrics/reconciliation"): {400, 401, 403, 406, 413, 429},
}


@pytest.mark.django_db
@pytest.mark.parametrize(("method", "path"), OPERATIONS)
def test_every_operation_documents_each_error_status_it_can_give_with_the_error_component(document, method, path):
    responses = document["paths"][path][method]["responses"]

    errors = {int(status) for status in responses if int(status) >= 400}
    assert errors == EXPECTED_ERRORS[(method, path)]
    for status in errors:
        assert responses[str(status)]["content"]["application/json"]["schema"] == ERROR_REF, status
        assert responses[str(status)]["description"].startswith("- `"), status


@pytest.mark.django_db
def test_error_descriptions_name_the_codes_of_each_status(document):
    ballots = document["paths"]["/api/v1/lotteries/{lottery_id}/ballots"]["post"]["responses"]
    close = document["paths"]["/api/v1/lotteries/{lottery_id}/close"]["post"]["responses"]

    assert "`not_authenticated`" in ballots["401"]["description"]
    assert "`authentication_failed`" in ballots["401"]["description"]
    assert "`player_banned`" in ballots["403"]["description"]
    assert "`csrf_failed`" in ballots["403"]["description"]
    for code in ("lottery_not_open", "lottery_closed", "stake_required", "ballot_limit_reached", "duplicate_entry"):
        assert f"`{code}`" in ballots["409"]["description"]
    assert "`idempotency_key_reused`" in ballots["422"]["description"]
    assert "`lottery_not_due`" in close["409"]["description"]
    assert "`malformed_request`" in close["400"]["description"]
    assert "`request_too_large`" in close["413"]["description"]
    # the close endpoint refuses anonymous callers with 403, not DRF's 401 not_authenticated
    assert "`not_authenticated`" not in close["401"]["description"]
    assert "`login_locked_out`" in document["paths"]["/api/v1/auth/token"]["post"]["responses"]["429"]["description"]
    assert ballots["401"]["headers"]["WWW-Authenticate"]["required"] is True
    assert "Retry-After" in ballots["429"]["headers"]
    unavailable = document["paths"]["/api/v1/stats"]["get"]["responses"]["506"]
    assert unavailable["description"].startswith("- `stats_unavailable`")
    assert unavailable["headers"]["Retry-After"]["required"] is True


@pytest.mark.django_db
def test_the_internal_token_is_a_security_scheme_of_the_operations_that_take_it(document):
    assert {(method, path) for path, item in document["paths"].items() for method in item} == set(OPERATIONS)
    scheme = document["components"]["securitySchemes"]["internalToken"]
    assert scheme == {**scheme, "type": "apiKey", "in": "header", "name": "X-Internal-Token"}

    for method, path in OPERATIONS:
        security = document["paths"][path][method].get("security")
        takes_it = path in {"/api/v1/lotteries/{lottery_id}/close", "/api/v1/stakes", "/api/v1/drops"} or (
            path.startswith("/api/v1/loadgen/")
        )
        assert ({"internalToken": []} in security) is takes_it, path
        if takes_it:
            assert {"tokenAuth": []} in security
            assert {} not in security


@pytest.mark.django_db
def test_the_token_endpoint_is_anonymous_takes_username_and_password_and_returns_the_token(document):
    operation = document["paths"]["/api/v1/auth/token"]["post"]

    assert operation["security"] == []
    content = operation["requestBody"]["content"]
    assert {"application/json", "application/x-www-form-urlencoded"} <= set(content)
    request = _resolve(document, content["application/json"]["schema"])
    assert set(request["required"]) == {"username", "password"}
    token = _resolve(document, operation["responses"]["200"]["content"]["application/json"]["schema"])
    assert token["required"] == ["token"]
    assert token["properties"]["token"]["type"] == "string"


@pytest.mark.django_db
def test_the_document_is_the_same_for_anyone_and_for_staff(client, make_player):
    # given the document as fetched anonymously, and by staff with a token and with a session
    anonymous = _document(client)
    staff = make_player(is_staff=True)
    with_token = _document(client, HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=staff).key}")
    client.force_login(staff)
    with_session = _document(client)

    # then they are one document, and the player's ballot filters are in it
    assert with_token == anonymous
    assert with_session == anonymous
    names = {p["name"] for p in anonymous["paths"]["/api/v1/ballots"]["get"]["parameters"]}
    assert {"lottery", "status", "page", "page_size"} <= names


@pytest.mark.django_db
def test_the_idempotency_key_header_documents_its_limits(document):
    [header] = [
        p
        for p in document["paths"]["/api/v1/lotteries/{lottery_id}/ballots"]["post"]["parameters"]
        if p["name"] == "Idempotency-Key"
    ]
    schema = header["schema"]

    assert header["in"] == "header"
    assert (schema["type"], schema["minLength"], schema["maxLength"]) == ("string", 1, 255)
    assert schema["pattern"] == r"^[\x21-\x7e]{1,255}$"
    pattern = re.compile(schema["pattern"])
    assert pattern.match("7f9c2d4e-first-try")
    assert not pattern.match("")
    assert not pattern.match("has space")


def _parameters(document: dict[str, Any], method: str, path: str) -> dict[str, Any]:
    return {p["name"]: p for p in document["paths"][path][method].get("parameters", [])}


@pytest.mark.django_db
@pytest.mark.parametrize(("method", "path"), [(method, path) for method, path in OPERATIONS if "{" in path])
def test_every_path_id_is_an_integer_within_bigint(document, method, path):
    [parameter] = [p for p in _parameters(document, method, path).values() if p["in"] == "path"]

    assert parameter["required"] is True
    assert parameter["schema"] == {"type": "integer", "format": "int64", "minimum": 1, "maximum": 2**63 - 1}


@pytest.mark.django_db
@pytest.mark.parametrize(
    "path",
    ["/api/v1/lotteries", "/api/v1/lotteries/{lottery_id}/winners", "/api/v1/ballots", "/api/v1/winners"],
)
def test_every_list_documents_page_and_page_size_with_their_bounds(document, path):
    parameters = _parameters(document, "get", path)

    assert parameters["page"]["schema"] == {"type": "integer", "minimum": 1}
    assert parameters["page_size"]["schema"] == {"type": "integer", "minimum": 1, "maximum": 500}


@pytest.mark.django_db
def test_filters_document_their_formats(document):
    lotteries = _parameters(document, "get", "/api/v1/lotteries")
    ballots = _parameters(document, "get", "/api/v1/ballots")
    winners = _parameters(document, "get", "/api/v1/winners")

    for name in ("date", "date_from", "date_to"):
        assert lotteries[name]["schema"] == {"type": "string", "format": "date"}, name
    assert set(lotteries["kind"]["schema"]["enum"]) == {"daily", "drop", "pool"}
    assert set(lotteries["state"]["schema"]["enum"]) == {"scheduled", "open", "closed", "drawn", "cancelled"}
    assert winners["date"]["schema"] == {"type": "string", "format": "date"}
    assert winners["date"]["required"] is True
    assert ballots["lottery"]["schema"]["type"] == "integer"
    assert (ballots["lottery"]["schema"]["minimum"], ballots["lottery"]["schema"]["maximum"]) == (1, 2**63 - 1)
    assert set(ballots["status"]["schema"]["enum"]) == {"valid", "rejected", "void"}


@pytest.mark.django_db
@pytest.mark.usefixtures("kafka_broker")
def test_a_real_stake_response_validates_against_the_documented_one(api, document):
    import jsonschema  # type: ignore[import-untyped]

    operation = document["paths"]["/api/v1/stakes"]["post"]
    body = {"playerId": "42", "gameId": "doc-game", "amount": "1.50", "currency": "EUR"}
    request_schema = {**document, **operation["requestBody"]["content"]["application/json"]["schema"]}
    response_schema = {**document, **operation["responses"]["202"]["content"]["application/json"]["schema"]}

    response = api.post("/api/v1/stakes", body, format="json", HTTP_X_INTERNAL_TOKEN="test-stakes-token-0000")

    assert response.status_code == 202, response.content
    jsonschema.validate(body, request_schema)
    jsonschema.validate(response.json(), response_schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"force": True}, request_schema)
