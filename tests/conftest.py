"""Session fixtures: the real Kafka and Cassandra, reused if running, else started here.

Only services this session started are stopped at its end. Every test isolates itself with a
unique topic prefix, keyspace and consumer group (the ``isolated`` fixture), so tests never see
each other's data and can run against a long-lived local platform too.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from covidtech import settings as settings_mod
from covidtech.settings import Settings
from tests.support import isolated_env


@pytest.fixture(scope="session")
def base_settings() -> Settings:
    return settings_mod.load()


@pytest.fixture(scope="session")
def platform(base_settings: Settings) -> Iterator[Settings]:
    """Kafka and Cassandra answering on the configured ports."""
    from infra import lifecycle, services

    s = base_settings
    started = [
        svc.name
        for svc in (services.kafka(s), services.cassandra(s))
        if services.running_pid(svc, s) is None
    ]
    # On a helper thread: this fixture may be first requested inside the test event loop.
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(lifecycle.up, s, lambda m: print(f"[infra] {m}")).result()
    yield s
    if started:
        for svc in (services.kafka(s), services.cassandra(s)):
            if svc.name in started:
                services.stop(svc, s)


@pytest.fixture
def isolated(platform: Settings) -> Iterator[Settings]:
    """Settings with this test's own topics, keyspace and consumer group, all created."""
    yield from isolated_env(platform)
