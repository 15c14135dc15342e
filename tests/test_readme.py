"""The README's promises that a test can keep honest."""

import json
import re
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from django.urls import reverse
from django.utils import timezone

from lifecycle.services import lottery_close

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"


def verify_script() -> str:
    match = re.search(
        r"<!-- verify-script:start -->\n```python\n(.*?)```\n<!-- verify-script:end -->", README.read_text(), re.S
    )
    assert match, "the README's verification script is missing"
    return match.group(1)


@pytest.mark.django_db
def test_the_readme_script_verifies_a_real_draw_from_its_json_alone(tmp_path, api, make_lottery, make_player, enter):
    closes_at = timezone.now() - timedelta(minutes=1)
    lottery = make_lottery(closes_at=closes_at, winners_count=3, alternates_count=2)
    for _ in range(40):
        enter(lottery, make_player(), now=closes_at - timedelta(minutes=5))
    draw = lottery_close(lottery_id=lottery.pk, source="command").draw
    assert draw is not None
    response = api.get(reverse("draw-verification", args=[draw.pk]))
    document = tmp_path / "draw.json"
    document.write_bytes(b"".join(response.streaming_content))
    script = tmp_path / "verify.py"
    script.write_text(verify_script())

    good = subprocess.run([sys.executable, str(script), str(document)], capture_output=True, text=True, check=False)

    assert good.returncode == 0, good.stderr
    assert len(draw.alternate_ballot_ids) == 2
    assert good.stdout.strip() == (
        f"draw {draw.pk} verified: 40 entries, winners {list(draw.winning_ballot_ids)}, "
        f"alternates {list(draw.alternate_ballot_ids)}"
    )

    # It refuses a document whose alternates were reordered.
    reordered = json.loads(document.read_text())
    reordered["alternate_ballot_ids"].reverse()
    (tmp_path / "reordered.json").write_text(json.dumps(reordered))
    swapped = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "reordered.json")], capture_output=True, text=True, check=False
    )
    assert swapped.returncode != 0
    assert "published" in swapped.stderr

    # The same script refuses a document whose ballot list was tampered with.
    tampered = json.loads(document.read_text())
    tampered["ballot_ids"][5] += 1_000_000
    tampered["ballot_ids"].sort()
    document.write_text(json.dumps(tampered))
    bad = subprocess.run([sys.executable, str(script), str(document)], capture_output=True, text=True, check=False)
    assert bad.returncode != 0
    assert "does not match the sealed digest" in bad.stderr


def _anchors(page: Path) -> set[str]:
    """The heading anchors of a Markdown page, as GitHub makes them (code blocks left out)."""
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    headings = re.findall(r"^#+ (.*)$", text, re.M)
    return {re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-") for heading in headings}


def test_every_link_of_the_readme_and_its_pages_reaches_a_file_and_heading_that_exist():
    pages = [README, ROOT / "bench" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    broken = []
    for page in pages:
        for link in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
            if link.startswith(("http://", "https://")):
                continue
            path, _, anchor = link.partition("#")
            target = (page.parent / path).resolve() if path else page
            if not target.exists() or (anchor and target.suffix == ".md" and anchor not in _anchors(target)):
                broken.append(f"{page.relative_to(ROOT)}: {link}")
    assert len(pages) > 2
    assert broken == []


def test_every_environment_variable_the_settings_read_is_documented():
    source = (ROOT / "lottery_site" / "settings.py").read_text()
    read = set(re.findall(r'(?:env_(?:str|bool|int|float|list)|os\.environ\.get)\(\s*"([A-Z0-9_]+)"', source))
    documented = (ROOT / "docs" / "settings.md").read_text()

    assert len(read) > 40
    assert sorted(name for name in read if f"`{name}`" not in documented) == []
