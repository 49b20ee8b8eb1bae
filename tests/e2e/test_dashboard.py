"""The MOH dashboard in a real headless Chromium against the running system.

HTTP ingest (a small simulated outbreak) -> Kafka -> worker -> Cassandra -> read API ->
dashboard: the province chart and the coverage trend draw real figures, and a positive result
posted while the page is open shows up in the live alert table (through the SSE stream) and
completes a cluster. Polls with deadlines, never sleeps.

Needs Debian's ``chromium`` (``scripts/ensure-chromium``) and the ``playwright`` package; its
own browser download is not used. ``COVIDTECH_CHROMIUM`` names another binary;
``COVIDTECH_E2E_SCREENSHOT`` also saves the final screenshot there (docs/dashboard.png).
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from covidtech.settings import Settings, with_overrides
from simulator.client import simulate
from simulator.model import Outbreak
from tests.e2e.conftest import System, running_system
from tests.support import eventually, run_coroutine

pytestmark = pytest.mark.e2e

T = TypeVar("T")

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def chromium_path() -> str:
    path = os.environ.get("COVIDTECH_CHROMIUM") or shutil.which("chromium")
    if not path:
        pytest.fail("no chromium: run scripts/ensure-chromium (or set COVIDTECH_CHROMIUM)")
    return path


def rfc3339(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Ingest:
    """The ingest API as the test drives it: one signed token per scope."""

    def __init__(self, s: Settings, base_url: str) -> None:
        self._signer = s.token_signer()
        self._client = httpx.Client(base_url=base_url, timeout=30)

    def close(self) -> None:
        self._client.close()

    def post(self, scope: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
        token = self._signer.issue("e2e-dashboard", [scope], timedelta(hours=1))
        r = self._client.post(path, json=body, headers={"Authorization": f"Bearer {token}"})
        assert r.status_code in (200, 201, 202), f"{path}: {r.status_code} {r.text}"
        answer: dict[str, Any] = r.json()
        return answer


@dataclass(frozen=True)
class SharedVisit:
    """Four residents of Ho Chi Minh City who were at one market at the same time."""

    venue_id: str
    people: list[dict[str, Any]]


def shared_visit(ingest: Ingest, now: datetime) -> SharedVisit:
    venue = ingest.post(
        "venue-admin:79",
        "/v1/venues",
        {
            "name": "Chợ Bến Thành",
            "address": "Lê Lợi, Phường Bến Thành",
            "province": "79",
            "district": "760",
            "category": "market",
            "default_dwell_minutes": 45,
        },
    )
    people = [
        ingest.post(
            "app", "/v1/people", {"province": "79", "district": "760", "birth_year": 1970 + 7 * i}
        )
        for i in range(4)
    ]
    for person in people:
        for direction, at in (
            ("IN", now - timedelta(minutes=70)),
            ("OUT", now - timedelta(minutes=25)),
        ):
            ingest.post(
                f"venue:{venue['venue_id']}@79",  # the market's gate scans each person's QR
                "/v1/scans",
                {
                    "scan_id": str(uuid.uuid4()),
                    "venue_qr": venue["venue_qr"],
                    "person_qr": person["person_qr"],
                    "scanned_at": rfc3339(at),
                    "direction": direction,
                },
            )
    return SharedVisit(venue["venue_id"], people)


def positive_result(ingest: Ingest, person: dict[str, Any], now: datetime) -> None:
    sample_id = f"E2E-{uuid.uuid4().hex[:12].upper()}"
    ingest.post(
        "site:e2e-site@79",
        "/v1/samples",
        {
            "sample_id": sample_id,
            "province": "79",
            "test_type": "PCR",
            "collected_at": rfc3339(now - timedelta(minutes=15)),
            "members": [{"person_qr": person["person_qr"]}],
        },
    )
    ingest.post("lab:e2e-lab@79", f"/v1/samples/{sample_id}/result", {"result": "POSITIVE"})


def allocate(ingest: Ingest) -> None:
    """Doses allocated to two of the simulated provinces: the stock panel has rows."""
    for province, doses in (("79", 400), ("01", 250)):
        ingest.post(
            "moh",
            "/v1/vaccination/allocations",
            {
                "allocation_id": f"e2e-{province}-az",
                "province": province,
                "vaccine": "AZ",
                "doses": doses,
            },
        )


class Read:
    """The read API with the MOH token, to compare the panels with what it answers."""

    def __init__(self, base_url: str, token: str) -> None:
        self._client = httpx.Client(
            base_url=base_url, timeout=30, headers={"Authorization": f"Bearer {token}"}
        )

    def close(self) -> None:
        self._client.close()

    def get(self, path: str, **params: str) -> dict[str, Any]:
        r = self._client.get(path, params=params)
        assert r.status_code == 200, f"{path}: {r.status_code} {r.text}"
        answer: dict[str, Any] = r.json()
        return answer

    def nation(self, what: str, page_from: str, page_to: str) -> list[dict[str, Any]]:
        body = self.get(f"/v1/epidemiology/{what}", area="VN", **{"from": page_from, "to": page_to})
        return [row for row in body["rows"] if row["province"] == "VN"]


def bar_values(page: Any, selector: str) -> dict[str, float]:
    pairs = page.eval_on_selector_all(
        selector, "rs => rs.map(r => [r.dataset.date, Number(r.dataset.value)])"
    )
    return {d: v for d, v in pairs}


def check_epidemic_panels(page: Any, read: Read) -> None:
    """Cases with Rt, positivity, declarations and stock show what the read API answers."""
    page.wait_for_function(
        "() => document.querySelectorAll('#cases-chart rect.bar-cases').length > 0 "
        "&& document.querySelectorAll('#syndromic-chart rect.bar-total').length > 0 "
        "&& document.querySelectorAll('#stock-body tr').length > 0",
        timeout=30_000,
    )
    days = sorted(bar_values(page, "#cases-chart rect.bar-cases"))
    first, last = days[0], days[-1]
    assert len(days) == 30, days
    cases = read.nation("cases", first, last)
    shown = bar_values(page, "#cases-chart rect.bar-cases")
    assert shown == {r["date"]: r["by_sampling_date"] for r in cases}
    assert sum(shown.values()) > 0, shown
    rt = {r["date"]: r["rt"] for r in read.nation("rt", first, last) if r["rt"] is not None}
    assert rt and bar_values(page, "#cases-chart circle.pt-rt") == rt
    positivity = read.nation("positivity", first, last)
    tests = bar_values(page, "#positivity-chart rect.bar-total")
    assert tests == {r["date"]: r["tests"] for r in positivity} and sum(tests.values()) > 0
    positives = bar_values(page, "#positivity-chart rect.bar-positives")
    assert positives == {r["date"]: r["positives"] for r in positivity}
    shares = bar_values(page, "#positivity-chart circle.pt-share")
    assert shares == {r["date"]: r["positivity"] for r in positivity if r["tests"]}
    syndromic = read.nation("syndromic", first, last)
    declared = bar_values(page, "#syndromic-chart rect.bar-total")
    assert declared == {r["date"]: r["declarations"] for r in syndromic}
    assert sum(declared.values()) > 0, declared
    stock = read.get("/v1/vaccination/stock")["items"]
    rows = page.eval_on_selector_all(
        "#stock-body tr",
        "rs => rs.map(r => [r.dataset.province, r.dataset.vaccine, Number(r.dataset.inStock)])",
    )
    assert sorted(map(tuple, rows)) == sorted(
        (i["province"], i["vaccine"], i["in_stock"]) for i in stock
    )
    assert {("79", "AZ"), ("01", "AZ")} <= {(p, v) for p, v, _ in rows}, rows


def check_chains(page: Any, read: Read, venue_id: str) -> None:
    """The market's chains: one node per case in its generation, one line per link."""

    def complete() -> dict[str, Any] | None:
        graph = read.get("/v1/provinces/79/chains", venue_id=venue_id)
        return graph if len(graph["cases"]) >= 3 else None

    graph = wait(complete, 45, "the market's chains hold its three cases")
    page.select_option("#chain-venue", venue_id)
    expected = sorted((c["case_id"], c["generation"]) for c in graph["cases"])
    page.wait_for_function(
        "n => document.querySelectorAll('#chains-graph g.node').length === n",
        arg=len(expected),
        timeout=30_000,
    )
    nodes = page.eval_on_selector_all(
        "#chains-graph g.node", "gs => gs.map(g => [g.dataset.case, Number(g.dataset.generation)])"
    )
    assert sorted(map(tuple, nodes)) == expected
    assert max(g for _, g in expected) >= 1, expected
    links = page.eval_on_selector_all(
        "#chains-graph line.chain-link", "ls => ls.map(l => [l.dataset.source, l.dataset.case])"
    )
    assert sorted(map(tuple, links)) == sorted(
        (k["source_case_id"], k["case_id"]) for k in graph["links"]
    )


def worker_caught_up(system: System) -> bool:
    from streams.replay import caught_up

    system.check_alive()
    return run_coroutine(caught_up(system.settings))


def wait(check: Callable[[], T | None], within: float, what: str) -> T:
    return eventually(check, timeout=within, interval=0.5, what=what)


@pytest.fixture
def system(isolated: Settings) -> Iterator[System]:
    """The running system, reporting Rt from one case in its window: the outbreak here has
    about nine cases, under the default ``rt_min_cases`` of 12, and the Rt points must be
    drawn to be checked."""
    with running_system(with_overrides(isolated, rules="rt_min_cases=1")) as running:
        yield running


@pytest.fixture
def ingest(system: System) -> Iterator[Ingest]:
    client = Ingest(system.settings, system.ingest_url)
    yield client
    client.close()


def test_dashboard_draws_real_data_and_shows_a_new_alert_live(
    system: System, ingest: Ingest, tmp_path: Path
) -> None:
    from playwright.sync_api import ConsoleMessage, sync_playwright

    s = system.settings
    now = datetime.now(UTC)
    run_coroutine(
        simulate(
            s,
            system.ingest_url,
            Outbreak(people=150, venues=15, provinces=4),
            seed=11,
            rate=0,
            progress=lambda line: None,
        )
    )
    allocate(ingest)
    visit = shared_visit(ingest, now)
    first, second, third, _ = visit.people
    positive_result(ingest, first, now)
    positive_result(ingest, second, now)
    wait(lambda: worker_caught_up(system), 90, "worker caught up with the outbreak")

    moh = s.token_signer().issue("MOH duty officer", ["moh"], timedelta(hours=1))
    read = Read(system.read_url, moh)
    errors: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            errors.append(message.text)

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1366, "height": 768})
            page.on("console", on_console)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(f"{system.read_url}/#token={moh}")
            assert "token=" not in page.url  # the page moved the token out of the address bar

            # Province bars: real, non-zero coverage per 100 from the simulated doses.
            page.wait_for_function(
                "() => [...document.querySelectorAll('#province-bars rect.bar-first')]"
                ".some(r => Number(r.dataset.value) > 0)",
                timeout=30_000,
            )
            bars = page.eval_on_selector_all(
                "#province-bars g.row",
                "rows => rows.map(r => [r.dataset.province, "
                "Number(r.querySelector('rect.bar-first').dataset.value)])",
            )
            assert bars and all(value > 0 for _, value in bars), bars
            assert [v for _, v in bars] == sorted((v for _, v in bars), reverse=True)
            labels = page.eval_on_selector_all(
                "#province-bars text.label", "t => t.map(x => x.textContent)"
            )
            assert "Hồ Chí Minh" in labels and "Hà Nội" in labels, labels

            # Coverage over time: a point per day, rising to today's national figure.
            page.wait_for_function(
                "() => document.querySelectorAll('#coverage-trend circle.pt-first').length >= 2",
                timeout=30_000,
            )
            trend = page.eval_on_selector_all(
                "#coverage-trend circle.pt-first", "c => c.map(x => Number(x.dataset.value))"
            )
            assert len(trend) == 30 and trend[-1] > 0 and trend == sorted(trend), trend

            # Below the first screen: the epidemic and the stock, as the read API answers.
            check_epidemic_panels(page, read)

            # The alert table holds the alerts of the first two cases; the stream is live.
            page.wait_for_function(
                "() => document.querySelectorAll('#alerts-body tr[data-alert-id]').length > 0 "
                "&& document.getElementById('live').dataset.state === 'on'",
                timeout=30_000,
            )
            before = set(
                page.eval_on_selector_all(
                    "#alerts-body tr[data-alert-id]", "rows => rows.map(r => r.dataset.alertId)"
                )
            )

            # A third visitor tests positive while the page is open.
            positive_result(ingest, third, datetime.now(UTC))
            page.wait_for_function(
                "case_id => [...document.querySelectorAll('#alerts-body tr[data-live=\"true\"]')]"
                ".some(r => r.dataset.case === case_id)",
                arg=third["person_id"],
                timeout=45_000,
            )
            fresh = page.eval_on_selector_all(
                "#alerts-body tr[data-live='true']",
                "rows => rows.map(r => [r.dataset.alertId, r.dataset.case, r.dataset.contact])",
            )
            mine = [a for a in fresh if a[1] == third["person_id"]]
            assert mine and all(a[0] not in before for a in mine), (fresh, before)
            contacts = {a[2] for a in mine}
            assert visit.people[3]["person_id"] in contacts, contacts

            # Three cases at the market within 7 days: it becomes a cluster on the page.
            page.wait_for_selector(
                f"#clusters-list li[data-venue='{visit.venue_id}']", timeout=45_000
            )
            # ...whose chains of transmission draw as a graph.
            check_chains(page, read, visit.venue_id)
            # Rates: at least two samples of the offsets, so a rate is shown.
            page.wait_for_function(
                "() => document.querySelectorAll('#rates-spark path.line-ingest').length === 1",
                timeout=30_000,
            )
            # Backlog per topic the workers read, source and derived.
            page.wait_for_selector(
                "#ops-topics li[data-topic='checkins'][data-kind='source']", timeout=30_000
            )
            page.wait_for_selector(
                "#ops-topics li[data-topic='visits'][data-kind='derived']", timeout=30_000
            )
            assert page.inner_text("#kpi-tat") not in ("", "–")

            shot = tmp_path / "dashboard.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 20_000
            keep = os.environ.get("COVIDTECH_E2E_SCREENSHOT")
            if keep:
                shutil.copyfile(shot, keep)
        finally:
            browser.close()
            read.close()
    assert not errors, errors
    system.check_alive()
