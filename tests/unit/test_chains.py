"""Chains of transmission, the pure rule (domain/chains.py)."""

from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from domain import chains
from domain.chains import CaseRef, Exposure
from domain.exposure import AlertStatus, Risk
from domain.rules import DEFAULT_RULES, PresenceRules

T = datetime(2021, 8, 1, 3, 0, tzinfo=UTC)
DAY = timedelta(days=1)
MS = timedelta(milliseconds=1)


def exposure(
    aid: str = "a1",
    source: str = "c",
    contact: str = "p",
    at: datetime = T,
    risk: Risk = Risk.HIGH,
    status: AlertStatus = AlertStatus.ACTIVE,
    venue: str = "v",
) -> Exposure:
    return Exposure(aid, source, contact, venue, "79", at, risk, status)


def case(person: str, at: datetime, sample: str | None = None) -> CaseRef:
    return CaseRef(at, person, sample or f"s-{person}-{at.isoformat()}")


def link_of(aid: str, source: CaseRef, target: CaseRef, venue: str = "v") -> chains.Link:
    return chains.Link(aid, source, target, venue, "79", T)


# ------------------------------------------------------------------------- the contact's side


def test_a_case_within_the_incubation_period_after_a_high_exposure_claims_its_source() -> None:
    p = case("p", T + 4 * DAY)
    (claim,) = chains.claims([p], [exposure()]).values()
    assert claim == chains.Claim("a1", p, "c", "v", "79", T)


@pytest.mark.parametrize(
    ("after", "linked"),
    [
        (timedelta(0), False),  # sampled at the exposure: not after it
        (MS, True),
        (14 * DAY, True),  # the 14th day is in (inclusive)
        (14 * DAY + MS, False),
        (-DAY, False),  # sampled before the exposure
    ],
)
def test_the_incubation_period_bounds(after: timedelta, linked: bool) -> None:
    assert bool(chains.claims([case("p", T + after)], [exposure()])) is linked


def test_the_incubation_period_is_a_rule() -> None:
    rules = replace(DEFAULT_RULES, incubation_period=timedelta(days=5))
    assert chains.claims([case("p", T + 5 * DAY)], [exposure()], rules)
    assert not chains.claims([case("p", T + 6 * DAY)], [exposure()], rules)
    with pytest.raises(ValueError, match="incubation_period"):
        PresenceRules(incubation_period=timedelta(0))


@pytest.mark.parametrize(
    ("risk", "status"),
    [
        (Risk.LOW, AlertStatus.ACTIVE),
        (Risk.HIGH, AlertStatus.WITHDRAWN),
        (Risk.LOW, AlertStatus.WITHDRAWN),
    ],
)
def test_only_an_active_high_exposure_claims(risk: Risk, status: AlertStatus) -> None:
    assert not chains.claims([case("p", T + DAY)], [exposure(risk=risk, status=status)])


def test_without_a_case_there_is_no_claim() -> None:
    assert chains.claims([], [exposure()]) == {}


def test_the_case_of_the_period_is_chosen_among_several() -> None:
    first, second = case("p", T - 100 * DAY), case("p", T + 3 * DAY)
    (claim,) = chains.claims([second, first], [exposure()]).values()
    assert claim.case == second


def test_claims_do_not_depend_on_order() -> None:
    cases = [case("p", T + 2 * DAY), case("p", T + 200 * DAY)]
    exposures = [
        exposure("a1"),
        exposure("a2", source="d", at=T + DAY),
        exposure("a3", source="e", risk=Risk.LOW),
        exposure("a4", source="f", at=T - 30 * DAY),
    ]
    expected = chains.claims(cases, exposures)
    assert set(expected) == {"a1", "a2"}
    for cs, es in itertools.product(
        itertools.permutations(cases), itertools.permutations(exposures)
    ):
        assert chains.claims(cs, es) == expected


# -------------------------------------------------------------------------- the source's side


def test_a_claim_becomes_a_link_from_the_sources_earlier_case() -> None:
    p, c = case("p", T + 4 * DAY), case("c", T + DAY)
    claim = chains.Claim("a1", p, "c", "v", "79", T)
    assert chains.links([c], [claim]) == {"a1": chains.Link("a1", c, p, "v", "79", T)}


def test_a_source_sampled_later_or_at_the_same_time_is_not_a_source() -> None:
    p = case("p", T + 4 * DAY)
    claim = chains.Claim("a1", p, "c", "v", "79", T)
    assert chains.links([case("c", T + 5 * DAY)], [claim]) == {}
    assert chains.links([case("c", T + 4 * DAY)], [claim]) == {}
    assert chains.links([], [claim]) == {}


def test_the_latest_earlier_case_of_the_source_is_the_source() -> None:
    p = case("p", T + 4 * DAY)
    old, recent, later = case("c", T - 95 * DAY), case("c", T + DAY), case("c", T + 100 * DAY)
    claim = chains.Claim("a1", p, "c", "v", "79", T)
    for order in itertools.permutations([old, recent, later]):
        assert chains.links(order, [claim])["a1"].source == recent


def test_mutual_exposures_link_only_the_earlier_case_to_the_later() -> None:
    """Two cases at one venue while both infectious alert each other; only the one sampled
    first can be the source, so the graph has no cycle."""
    a, b = case("a", T + DAY), case("b", T + 2 * DAY)
    a_claims = chains.claims([a], [exposure("ab", source="b", contact="a")])
    b_claims = chains.claims([b], [exposure("ba", source="a", contact="b")])
    assert chains.links([b], a_claims.values()) == {}
    assert set(chains.links([a], b_claims.values())) == {"ba"}


def test_diff() -> None:
    assert chains.diff({"a": 1, "b": 2, "c": 3}, {"a": 1, "b": 5, "d": 4}) == (
        [("b", 5), ("d", 4)],
        ["c"],
    )
    assert chains.diff({"a": 1}, {"a": 1}) == ([], [])


# ------------------------------------------------------------------------------- generations


def test_generations_follow_the_links() -> None:
    a, b, c, d = (case(n, T + i * DAY) for i, n in enumerate("abcd"))
    graph = chains.chain_graph(
        [link_of("ab", a, b), link_of("bc", b, c, "w"), link_of("ad", a, d), link_of("cd", c, d)]
    )
    assert [(n.case.person_id, n.generation) for n in graph.nodes] == [
        ("a", 0),
        ("b", 1),
        ("c", 2),
        ("d", 1),  # a direct link from a is the shortest known chain
    ]
    assert graph.venues == ("v", "w")
    assert graph.generations == 3
    assert len(graph.links) == 4


def test_two_chains_and_an_unknown_source() -> None:
    a, b, x, y = case("a", T), case("b", T + DAY), case("x", T + 2 * DAY), case("y", T + 3 * DAY)
    graph = chains.chain_graph([link_of("xy", x, y), link_of("ab", a, b)])
    assert {n.case.person_id: n.generation for n in graph.nodes} == {
        "a": 0,
        "b": 1,
        "x": 0,
        "y": 1,
    }


def test_the_graph_does_not_depend_on_order_or_repeats() -> None:
    a, b, c = (case(n, T + i * DAY) for i, n in enumerate("abc"))
    given = [link_of("ab", a, b), link_of("bc", b, c), link_of("ac", a, c, "w")]
    expected = chains.chain_graph(given)
    for order in itertools.permutations(given + given[:1]):
        assert chains.chain_graph(order) == expected


def test_an_inconsistent_link_does_not_loop() -> None:
    a, b = case("a", T), case("b", T + DAY)
    graph = chains.chain_graph([link_of("ab", a, b), link_of("ba", b, a)])
    assert {n.case.person_id: n.generation for n in graph.nodes} == {"a": 0, "b": 1}


def test_an_empty_graph() -> None:
    graph = chains.chain_graph([])
    assert (graph.nodes, graph.links, graph.venues, graph.generations) == ((), (), (), 0)
