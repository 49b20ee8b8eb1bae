"""``covidtech verify``: exit 0 valid, 1 refused with the reason, 2 when the keys cannot be had
(the command against a running read API: tests/integration/test_certificates.py)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from click.testing import CliRunner

from cli.main import main
from covidtech.settings import load
from domain.certificate import CertificateKeys, certificate_doses, issue, pseudonym

DEV = load({})  # the development settings, as `covidtech verify` reads them by default
KEYS = CertificateKeys.parse("elsewhere:" + "A" * 43 + "=")


def certificate(keys: CertificateKeys, now: datetime | None = None) -> str:
    now = now or datetime.now(UTC)
    return issue(
        keys,
        subject=pseudonym("secret", "p1"),
        birth_year=1975,
        doses=certificate_doses([("d1", now - timedelta(days=20), "JANSSEN")]),
        now=now,
    )


def test_valid_with_the_local_keys() -> None:
    r = CliRunner().invoke(main, ["verify", certificate(DEV.certificate_keys())])
    assert r.exit_code == 0, r.output
    assert r.output.startswith("valid: fully vaccinated (1 dose, primary series of 1)")
    assert "JANSSEN - Janssen (Ad26.COV2.S)" in r.output and "born 1975" in r.output


def test_keys_from_a_file_and_json_output(tmp_path: Path) -> None:
    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps(KEYS.public.document()))
    r = CliRunner().invoke(main, ["verify", "--keys", str(keys), "--json", certificate(KEYS)])
    assert r.exit_code == 0, r.output
    answer = json.loads(r.output)
    assert answer["valid"] is True and answer["claims"]["kid"] == "elsewhere"
    # the same payload against the local keys: a key this verifier does not know
    r = CliRunner().invoke(main, ["verify", certificate(KEYS)])
    assert r.exit_code == 1
    assert r.output.startswith("refused: unknown-key: ")


def test_refusals_exit_1_with_the_reason() -> None:
    expired = certificate(DEV.certificate_keys(), datetime.now(UTC) - timedelta(days=400))
    r = CliRunner().invoke(main, ["verify", expired])
    assert (r.exit_code, r.output.split(":")[0:2]) == (1, ["refused", " expired"])
    r = CliRunner().invoke(main, ["verify", "-"], input="not a certificate\n")
    assert r.exit_code == 1 and r.output.startswith("refused: malformed: ")


def test_keys_that_cannot_be_had_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"keys": "none"}')
    for source in (str(tmp_path / "missing.json"), str(bad), "http://127.0.0.1:9/"):
        r = CliRunner().invoke(main, ["verify", "--keys", source, "CT1:"])
        assert r.exit_code == 2, (source, r.output)
