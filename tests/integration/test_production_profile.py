"""The production profile against the real broker: what a process refuses to start with.

Issue 13: the broker auto-created topics, so a read API with a mistyped topic prefix found an
empty new ``grants`` topic, reported ready, and accepted a revoked grant. The local broker now
creates no topic on first use; the production profile also refuses, at start, a broker that
would, and catalogue topics that are missing; readiness names missing topics.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest

from api.app import create_app
from api.config import ReadApiConfig
from api.testing import client, running
from covidtech.settings import Settings, SettingsError, with_overrides
from infra.kafka_topics import auto_creating_brokers, production_refusals, require_production_ready
from producers.app import create_app as create_ingest_app
from projections.cassandra import CassandraStore
from tests.integration.ingest_harness import serving
from tests.support import isolated_env, unique

pytestmark = pytest.mark.integration

OWN: dict[str, Any] = {
    "secret": "q" * 40,
    "token_keys": "2026-12:" + "t" * 40,
    "cert_keys": "2026-12:" + "c" * 43 + "=",
}
CONFIG = ReadApiConfig(catchup_timeout_seconds=5)


def production(s: Settings, **changes: Any) -> Settings:
    """``s`` in the production profile with keys of its own, on the shared platform, whose
    broker and node ask for no account: built past the settings' check, which refuses the
    profile without the Kafka and Cassandra accounts (asserted here; the accounts against a
    broker and a node that ask for them: tests/integration/test_service_auth.py)."""
    with pytest.raises(SettingsError, match="production needs the Kafka account"):
        with_overrides(s, profile="production", **OWN, **changes)
    return replace(s, profile="production", **OWN, **changes)


@pytest.fixture
def env(platform: Settings) -> Iterator[Settings]:
    yield from isolated_env(platform, "prod")


async def test_the_local_broker_creates_no_topic_on_first_use(platform: Settings) -> None:
    assert await auto_creating_brokers(platform) == []


async def test_production_starts_on_its_own_keys_and_existing_topics(env: Settings) -> None:
    prod = production(env)
    assert await production_refusals(prod) == []
    store = CassandraStore.from_settings(prod)
    try:
        app = create_app(prod, config=CONFIG, store=store)
        async with running(app), client(app) as http:
            ready = await http.get("/readyz")
            assert ready.status_code == 200, ready.text
            assert ready.json()["checks"]["topics"] is True
    finally:
        store.close()
    async with serving(create_ingest_app(prod)) as ingest:
        ready = await ingest.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json()["checks"]["topics"] is True


async def test_a_mistyped_prefix_finds_no_topic_and_nothing_starts(env: Settings) -> None:
    typo = production(env, topic_prefix=f"{unique('typo')}.")
    refusals = await production_refusals(typo)
    assert len(refusals) == 1 and refusals[0].startswith("topics missing: ")
    assert typo.topic("grants") in refusals[0]
    with pytest.raises(SettingsError, match="refuses to start: topics missing"):
        await require_production_ready(typo)
    store = CassandraStore.from_settings(typo)
    try:
        for settings in (typo, with_overrides(typo, profile="development")):
            # In production the profile refuses; in development the revocation list cannot
            # follow a topic that does not exist (it is no longer created empty), so the read
            # API fails closed either way instead of accepting revoked grants.
            app = create_app(settings, config=CONFIG, store=store)
            with pytest.raises(Exception, match=r"refuses to start|grants"):
                async with running(app):
                    pass
    finally:
        store.close()
