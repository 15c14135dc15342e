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

from lotteries.services import lottery_close

README = Path(__file__).resolve().parent.parent / "README.md"


def verify_script() -> str:
    match = re.search(
        r"<!-- verify-script:start -->\n```python\n(.*?)```\n<!-- verify-script:end -->", README.read_text(), re.S
    )
    assert match, "the README's verification script is missing"
    return match.group(1)


@pytest.mark.django_db
def test_the_readme_script_verifies_a_real_draw_from_its_json_alone(tmp_path, api, make_lottery, make_player, enter):
    closes_at = timezone.now() - timedelta(minutes=1)
    lottery = make_lottery(closes_at=closes_at, winners_count=3)
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
    assert good.stdout.strip() == f"draw {draw.pk} verified: 40 entries, winners {list(draw.winning_ballot_ids)}"

    # The same script refuses a document whose ballot list was tampered with.
    tampered = json.loads(document.read_text())
    tampered["ballot_ids"][5] += 1_000_000
    tampered["ballot_ids"].sort()
    document.write_text(json.dumps(tampered))
    bad = subprocess.run([sys.executable, str(script), str(document)], capture_output=True, text=True, check=False)
    assert bad.returncode != 0
    assert "does not match the sealed digest" in bad.stderr
