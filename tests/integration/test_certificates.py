"""Vaccination certificates through the real read API (real Cassandra and Kafka, served by
uvicorn): issued from a person's projected doses, audited, verified through the public route
and offline by ``covidtech verify`` run as a process against the public key endpoint."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta

import httpx
import pytest

from api.app import create_app
from api.config import ReadApiConfig
from covidtech.settings import Settings
from domain.certificate import CertificateKeys, certificate_doses, issue, pseudonym
from projections.cassandra import CassandraStore
from projections.model import Query
from tests.integration.read_api_support import DataSet, populated
from tests.support import run_coroutine, served_in_thread

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def data(env: Settings) -> DataSet:
    return populated(env)  # p79: AZ 60 days ago, PFIZER 5 days ago


@pytest.fixture(scope="module")
def base_url(env: Settings, data: DataSet) -> Iterator[str]:
    app = create_app(env, config=ReadApiConfig(aggregate_cache_seconds=0))
    yield from served_in_thread(app, "read-api-certificates")


def moh(env: Settings) -> dict[str, str]:
    token = env.token_signer().issue("Cong chung Q1", ["moh"], timedelta(hours=1))
    return {"Authorization": f"Bearer {token}"}


def covidtech(*args: str, env: Settings) -> subprocess.CompletedProcess[str]:
    """``covidtech verify ...`` as a separate process, with the test's settings."""
    return subprocess.run(
        [sys.executable, "-m", "cli", *args],
        env={**os.environ, **env.as_env()},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_certificate_is_issued_audited_and_verified_online_and_offline(
    env: Settings, data: DataSet, base_url: str
) -> None:
    r = httpx.get(f"{base_url}/v1/people/p79/certificate", headers=moh(env), timeout=30)
    assert r.status_code == 200, r.text
    body = r.json()
    payload, claims = body["payload"], body["claims"]
    assert payload.startswith("CT1:") and len(payload) < 300
    assert claims["subject"] == pseudonym(env.secret, "p79")
    assert [(d["number"], d["vaccine"]) for d in claims["doses"]] == [(1, "AZ"), (2, "PFIZER")]
    assert claims["fully_vaccinated"] is True and claims["birth_year"] == 1980

    # audited in Cassandra before the answer (fail closed), naming the person
    async def audited() -> list[dict[str, object]]:
        store = CassandraStore.from_settings(env)
        try:
            rows = await store.select(Query("audit_log", {"day": data.today}))
        finally:
            store.close()
        return [dict(row) for row in rows if row["subject"] == "certificate:p79"]

    [row] = run_coroutine(audited())
    assert row["person_ids"] == ["p79"] and row["actor"] == "Cong chung Q1"

    # the public route: valid with the same claims
    verified = httpx.post(
        f"{base_url}/v1/certificates/verify", json={"payload": payload}, timeout=30
    ).json()
    assert verified == {"valid": True, "reason": None, "detail": None, "claims": claims}

    # offline: the command fetches the public keys once and checks the payload itself
    ok = covidtech("verify", "--keys", base_url, payload, env=env)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.startswith("valid: fully vaccinated (2 doses, primary series of 2)")
    assert "PFIZER - Pfizer-BioNTech" in ok.stdout

    # one character changed: refused by both, with a reason
    i = len(payload) // 2
    tampered = payload[:i] + ("0" if payload[i] != "0" else "1") + payload[i + 1 :]
    refused = httpx.post(
        f"{base_url}/v1/certificates/verify", json={"payload": tampered}, timeout=30
    ).json()
    assert refused["valid"] is False and refused["reason"] in ("bad-signature", "malformed")
    no = covidtech("verify", "--keys", f"{base_url}/v1/certificates/keys", tampered, env=env)
    assert no.returncode == 1 and no.stdout.startswith(f"refused: {refused['reason']}: ")


def test_expired_and_unknown_key_payloads_are_refused_with_their_reason(
    env: Settings, data: DataSet, base_url: str
) -> None:
    doses = certificate_doses([("d1", data.now - timedelta(days=500), "AZ")])
    expired = issue(
        env.certificate_keys(),
        subject=pseudonym(env.secret, "p79"),
        birth_year=1980,
        doses=doses,
        now=data.now - timedelta(days=400),
    )
    stranger = CertificateKeys.parse("someone-else:" + "B" * 43 + "=")
    unknown = issue(
        stranger, subject=pseudonym("x", "p79"), birth_year=1980, doses=doses, now=data.now
    )
    for payload, reason in ((expired, "expired"), (unknown, "unknown-key")):
        answer = httpx.post(
            f"{base_url}/v1/certificates/verify", json={"payload": payload}, timeout=30
        ).json()
        assert (answer["valid"], answer["reason"]) == (False, reason)
        run = covidtech("verify", "--keys", base_url, payload, env=env)
        assert run.returncode == 1 and run.stdout.startswith(f"refused: {reason}: "), run.stdout


def test_the_public_keys_are_the_settings_public_half(env: Settings, base_url: str) -> None:
    r = httpx.get(f"{base_url}/v1/certificates/keys", timeout=30)
    assert r.status_code == 200
    assert r.json() == env.certificate_keys().public.document()
    assert r.headers["cache-control"].startswith("public")


def test_the_person_shows_their_own_certificate_with_their_token(
    env: Settings, base_url: str
) -> None:
    token = env.token_signer().issue("p79", ["person:p79"], timedelta(hours=1))
    r = httpx.get(
        f"{base_url}/v1/me/certificate", headers={"Authorization": f"Bearer {token}"}, timeout=30
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["claims"]["subject"] == pseudonym(env.secret, "p79")
    run = covidtech("verify", "--keys", base_url, body["payload"], env=env)
    assert run.returncode == 0, run.stdout + run.stderr
