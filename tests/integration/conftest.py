"""Fixtures of the integration tests that share one environment per module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from covidtech.settings import Settings
from tests.support import isolated_env


@pytest.fixture(scope="module")
def env(platform: Settings) -> Iterator[Settings]:
    """Like ``isolated``, for a module whose tests share one app or data set: the module's own
    topics, keyspace and consumer group."""
    yield from isolated_env(platform, "m")
