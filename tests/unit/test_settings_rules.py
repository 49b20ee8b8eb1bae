"""The domain rules' numbers are settings: ``COVIDTECH_RULES`` overrides DESIGN's defaults."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from covidtech.settings import SettingsError, load
from domain.results import DEFAULT_RULES as RESULT_RULES
from domain.rules import DEFAULT_RULES
from producers.requests.checkins import parse_venue
from producers.requests.common import limits_of
from streams.handlers import all_handlers
from streams.people import PersonHandler
from streams.testing import SampleHandler


def test_without_overrides_the_rules_are_designs() -> None:
    assert load({}).domain_rules() == (DEFAULT_RULES, RESULT_RULES)


def test_overrides_reach_the_rules_of_both_objects() -> None:
    s = load(
        {
            "COVIDTECH_RULES": "default_dwell=45m, cluster_min_cases=4,no_onset_window_start=-72h,"
            "pending_too_long=2d"
        }
    )
    presence, results = s.domain_rules()
    assert presence.default_dwell == timedelta(minutes=45)
    assert presence.cluster_min_cases == 4
    assert presence.no_onset_window_start == timedelta(hours=-72)
    assert results.pending_too_long == timedelta(days=2)
    assert presence.max_dwell == DEFAULT_RULES.max_dwell  # the others keep their defaults
    # a child process (worker, API) gets the same rules through its environment
    assert load(s.as_env()).domain_rules() == (presence, results)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("dwell=45m", "rule name"),
        ("default_dwell", "rule name"),
        ("default_dwell=45 minutes", "not a duration"),
        ("cluster_min_cases=many", "cluster_min_cases"),
        ("default_dwell=13h", "exceeds max_dwell"),
        ("pool_max=1", "pool"),
        ("timezone=Asia/Bangkok", "fixed"),
        # the check-in status rules (domain/status.py)
        ("red_window=0d", "must be positive"),
        ("vaccination_delay=-1d", "must not be negative"),
        ("recovery_window=7d", "shorter than red_window"),
    ],
)
def test_a_bad_rule_fails_the_start_naming_it(raw: str, message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        load({"COVIDTECH_RULES": raw})


def test_the_worker_handlers_and_the_ingest_api_apply_the_settings_rules() -> None:
    s = load({"COVIDTECH_RULES": "default_dwell=45m,pool_max=6"})
    presence, results = s.domain_rules()
    handlers: dict[type, Any] = {type(h): h for h in all_handlers(presence, results)}
    assert handlers[PersonHandler].rules.default_dwell == timedelta(minutes=45)
    assert handlers[SampleHandler].results.pool_max == 6
    errors: list[object] = []
    body = {"name": "Chợ", "address": "1", "province": "79", "district": "760", "category": "m"}
    venue = parse_venue(body, errors, limits_of(s))  # type: ignore[arg-type]
    assert venue is not None and venue.default_dwell_minutes == 45
