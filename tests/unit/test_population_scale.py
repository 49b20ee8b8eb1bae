"""``population_scale``: per-hundred denominators of a simulation (domain, settings, routes,
the demo's choice). Without the setting every figure is the census one, unchanged."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from api.config import ReadApiConfig
from api.testing import bearer, client, running
from cli.demo import demo_settings
from covidtech.settings import Settings, SettingsError, load, with_overrides
from domain import reference
from domain.coverage import scaled_population
from projections.memory import InMemoryStore
from simulator.model import Outbreak, population_scale, simulated_provinces
from tests.programme_scenarios import day_at, programme_scenario
from tests.unit.pipeline_support import run
from tests.unit.read_support import read_app

SETTINGS = Settings(secret="unit-test-secret-0123456789")
CONFIG = ReadApiConfig(aggregate_cache_seconds=0, page_size=50)
SCALE = 0.0004
DAY = day_at(6).date().isoformat()


def test_scaled_population_is_the_population_unchanged_at_scale_one() -> None:
    assert scaled_population(8_993_082) == 8_993_082
    assert scaled_population(8_993_082, 1.0) == 8_993_082
    assert scaled_population(8_993_082, 0.001) == 8_993
    assert scaled_population(10, 0.001) == 1  # never 0: a denominator
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError):
            scaled_population(100, bad)


def test_the_setting_defaults_to_one_and_is_checked() -> None:
    assert load({}).population_scale == 1.0
    assert load({"COVIDTECH_POPULATION_SCALE": "0.00025"}).population_scale == 0.00025
    for bad in ("0", "-0.5", "abc", "nan"):
        with pytest.raises(SettingsError, match="POPULATION_SCALE"):
            load({"COVIDTECH_POPULATION_SCALE": bad})
    # a child process gets it back from the environment unchanged
    s = with_overrides(SETTINGS, population_scale=0.00025)
    assert load(s.as_env()).population_scale == 0.00025


def test_the_demo_scales_to_the_simulated_provinces_unless_told_otherwise() -> None:
    outbreak = Outbreak(people=3000)
    census = sum(p.population for p in simulated_provinces(outbreak))
    assert len(simulated_provinces(outbreak)) == outbreak.provinces
    assert population_scale(outbreak) == pytest.approx(3000 / census)
    assert demo_settings(SETTINGS, outbreak).population_scale == pytest.approx(3000 / census)
    mine = with_overrides(SETTINGS, population_scale=0.5)
    assert demo_settings(mine, outbreak).population_scale == 0.5


Answer = dict[str, Any]


async def _coverage(s: Settings, store: InMemoryStore) -> tuple[Answer, Answer, Answer]:
    app = read_app(s, CONFIG, store)
    headers = bearer(s, ["moh"])
    async with running(app), client(app) as c:
        answers: list[Answer] = []
        for path, params in (
            ("/v1/coverage", {"area": "79", "date": DAY}),
            ("/v1/coverage/series", {"area": "79", "from": DAY, "to": DAY}),
            ("/v1/dashboard/coverage-by-province", {"date": DAY}),
        ):
            r = await c.get(path, params=params, headers=headers)
            assert r.status_code == 200, r.text
            answers.append(r.json())
    return answers[0], answers[1]["points"][0], answers[2]


@pytest.fixture
async def store() -> AsyncIterator[InMemoryStore]:
    _, store = await run(programme_scenario())
    yield store


async def test_coverage_routes_divide_by_the_scaled_population(store: InMemoryStore) -> None:
    census = await _coverage(SETTINGS, store)
    scaled = await _coverage(with_overrides(SETTINGS, population_scale=SCALE), store)

    # Default: the census denominators, exactly as before.
    point, day, board = census
    pop79 = reference.population("79")
    assert point["population"] == day["population"] == pop79
    assert point["people_vaccinated"] > 0
    assert point["people_vaccinated_per_hundred"] == round(
        100 * point["people_vaccinated"] / pop79, 4
    )
    hcm = next(p for p in board["provinces"] if p["province"] == "79")
    assert hcm["population"] == pop79
    assert board["nation"]["population"] == reference.population(reference.NATION)

    # Scaled: same counts, denominators times the scale.
    s_point, s_day, s_board = scaled
    small = round(pop79 * SCALE)
    assert s_point["population"] == s_day["population"] == small
    assert s_point["people_vaccinated"] == point["people_vaccinated"]
    assert s_point["people_vaccinated_per_hundred"] == round(
        100 * point["people_vaccinated"] / small, 4
    )
    bands = {b["age_band"]: b["population"] for b in s_point["by_age_band"]}
    assert bands == {b: round(reference.population("79", b) * SCALE) for b in bands}
    s_hcm = next(p for p in s_board["provinces"] if p["province"] == "79")
    assert s_hcm["population"] == small
    assert s_hcm["people_vaccinated"] == hcm["people_vaccinated"]
    assert s_board["nation"]["population"] == round(reference.population(reference.NATION) * SCALE)
