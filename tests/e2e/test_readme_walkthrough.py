"""README's walkthrough ("The API, user by user") runs as written against the whole system.

The block is taken from README.md and run by bash with four changes only: the two API
addresses are this test's, ``.venv/bin/covidtech`` is this interpreter's ``-m cli``, the two
live streams (``curl -N``) are cut after a few seconds, and after the lab's result and after
the dose the script waits until the worker has projected them (a person would read the next
line slower than bash does). Any problem document in the output fails the test, and so does a
certificate that does not verify or an exposure notice that never reaches the neighbour.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from covidtech.processes import ROOT, child_env
from tests.e2e.conftest import System

pytestmark = pytest.mark.e2e

ADDRESSES = "IN=http://127.0.0.1:8001; OUT=http://127.0.0.1:8002"


def walkthrough() -> str:
    """The shell block of README's walkthrough: from its ``IN=`` line to the block's end."""
    text = (ROOT / "README.md").read_text()
    start = text.index(ADDRESSES)
    return text[start : text.index("```", start)]


def _wait_for(path: str, what: str) -> str:
    """A shell loop polling ``$OUT<path>`` with the person's token until ``what`` is in it."""
    return (
        f'for i in $(seq 300); do curl -s -H "Authorization: Bearer $ME" "$OUT{path}" '
        f"| grep -q '{what}' && break; sleep 0.2; done\n"
    )


def runnable(script: str, system: System) -> str:
    script = script.replace(ADDRESSES, f"IN={system.ingest_url}; OUT={system.read_url}")
    script = script.replace(".venv/bin/covidtech", f"{sys.executable} -m cli")
    script, streams = re.subn(
        r"^curl -N (.*?)(\s+#.*)?$", r"timeout 3 curl -sN \1 || true", script, flags=re.M
    )
    assert streams == 2, "the walkthrough has a notice stream and an alert stream"
    lines = script.splitlines(keepends=True)
    out = []
    for line in lines:
        out.append(line)
        if "/result -d" in line:
            out.append(_wait_for("/v1/me/results", "POSITIVE"))
        if line.startswith('  \\"residence_province'):
            out.append(_wait_for("/v1/me/doses", "JANSSEN"))
    return "".join(out) + '\nprintf "\\nNEIGHBOUR=%s\\n" "$NEIGHBOUR"\n'


def test_the_readme_walkthrough_runs_as_written(system: System, tmp_path: Path) -> None:
    script = runnable(walkthrough(), system)
    env = child_env(system.settings, PYTHONPATH=str(ROOT))
    done = subprocess.run(
        ["bash", "-c", script],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    out = done.stdout
    assert done.returncode == 0, done.stderr[-3000:]
    assert "urn:covidtech:problem" not in out, out[-5000:]
    # Both check-ins answered with the person's colour, the result reached its citizen, the
    # certificate verified through the route and offline.
    assert out.count('"status":"accepted","person_status":') == 2, out[:2000]
    assert '"state":"POSITIVE"' in out
    assert '"valid":true' in out and "valid: fully vaccinated" in out
    for image in ("poster.png", "certificate.png"):
        assert (tmp_path / image).read_bytes().startswith(b"\x89PNG\r\n\x1a\n"), image
    # The neighbour stood beside the case: their app gets a HIGH notice.
    neighbour = out.rsplit("NEIGHBOUR=", 1)[1].strip()
    headers = {"Authorization": f"Bearer {neighbour}"}
    deadline = time.monotonic() + 60
    while True:
        system.check_alive()
        r = httpx.get(f"{system.read_url}/v1/me/notices", headers=headers, timeout=5)
        assert r.status_code == 200, r.text
        items = r.json()["items"]
        if items:
            break
        assert time.monotonic() < deadline, "no notice for the neighbour within 60 s"
        time.sleep(0.5)
    assert [(n["risk"], n["status"]) for n in items] == [("HIGH", "ACTIVE")], json.dumps(items)
