"""Chains of transmission: which case infected which, through which venue (pure domain logic).

The rule (issue 15, DESIGN "Domain rules", docs/streams.md "Chains of transmission"): a case
whose positive sample was taken after a HIGH exposure to an earlier case at a venue, and at
most the incubation period (``PresenceRules.incubation_period``, 14 days) after it, is linked
to that case through that venue.

- The **exposure** is an ACTIVE HIGH exposure alert where the person is the contact; its time
  is the start of the contact's visit. A LOW or WITHDRAWN alert links nothing (a link through
  an alert that is withdrawn later disappears).
- The **case** is the person's case (anchored on its earliest positive sample,
  ``domain.results.cases``) whose anchor was collected in ``(exposure, exposure +
  incubation]``; cases are 90 days apart, so there is at most one.
- The **source** is the alert's case person's case: of their cases collected strictly
  before the infected case's, the latest. None (no link) when the source has no case
  collected before: two cases at one venue while both infectious alert each other, and only
  the one sampled earlier can be the source, so links always go from an earlier sample to a
  later one and the graph has no cycle.

The two halves are decided where their inputs meet: :func:`claims` by the infected person
(their cases and their alerts), :func:`links` by the source person (their cases and the claims
naming them). Both are functions of their inputs as sets, so shuffled, late or repeated events
converge (DESIGN "Order independence").

:func:`chain_graph` turns links into a graph with **generations**: a case that no link in the
graph reaches is generation 0; any other is one more than the lowest generation of its sources
(the shortest known chain from a case with no known source).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from domain.exposure import AlertStatus, Risk
from domain.presence import require_aware
from domain.rules import DEFAULT_RULES, PresenceRules

__all__ = [
    "CaseRef",
    "Claim",
    "Exposure",
    "Graph",
    "Link",
    "Node",
    "chain_graph",
    "claims",
    "diff",
    "infected_case",
    "links",
    "source_case",
]


@dataclass(frozen=True, slots=True, order=True)
class CaseRef:
    """A case as a chain sees it: its person and the positive sample it is anchored on."""

    collected_at: datetime
    person_id: str
    sample_id: str

    def __post_init__(self) -> None:
        require_aware("collected_at", self.collected_at)


@dataclass(frozen=True, slots=True)
class Exposure:
    """An exposure alert as the contact's side keeps it (the latest version of the alert)."""

    alert_id: str
    source_person_id: str
    contact_person_id: str
    venue_id: str
    province: str
    at: datetime
    """Start of the contact's visit."""
    risk: Risk
    status: AlertStatus

    @property
    def qualifies(self) -> bool:
        """Only an ACTIVE HIGH alert can link two cases."""
        return self.risk is Risk.HIGH and self.status is AlertStatus.ACTIVE


@dataclass(frozen=True, slots=True)
class Claim:
    """The infected side of a link: ``case`` followed a HIGH exposure to ``source_person_id``
    at ``venue_id`` within the incubation period. Keyed by the alert id."""

    alert_id: str
    case: CaseRef
    source_person_id: str
    venue_id: str
    province: str
    exposure_at: datetime


@dataclass(frozen=True, slots=True)
class Link:
    """A link of a chain: ``source`` -> ``case`` through ``venue_id`` (in ``province``, the
    venue's), the exposure at ``exposure_at``. Keyed by the alert id."""

    alert_id: str
    source: CaseRef
    case: CaseRef
    venue_id: str
    province: str
    exposure_at: datetime


def infected_case(
    cases: Iterable[CaseRef], exposure_at: datetime, rules: PresenceRules = DEFAULT_RULES
) -> CaseRef | None:
    """The case whose positive sample followed an exposure at ``exposure_at`` within the
    incubation period: collected in ``(exposure_at, exposure_at + incubation]`` (the earliest
    such case, should there be several)."""
    found = [
        c for c in cases if exposure_at < c.collected_at <= exposure_at + rules.incubation_period
    ]
    return min(found) if found else None


def claims(
    cases: Iterable[CaseRef], exposures: Iterable[Exposure], rules: PresenceRules = DEFAULT_RULES
) -> dict[str, Claim]:
    """A person's claims (by alert id): for each of their qualifying exposures, the case it
    may have caused. ``cases`` and ``exposures`` are the person's own (the contact side)."""
    held = tuple(cases)
    out: dict[str, Claim] = {}
    for e in exposures:
        if not e.qualifies:
            continue
        case = infected_case(held, e.at, rules)
        if case is not None and e.source_person_id != case.person_id:
            out[e.alert_id] = Claim(
                e.alert_id, case, e.source_person_id, e.venue_id, e.province, e.at
            )
    return dict(sorted(out.items()))


def source_case(source_cases: Iterable[CaseRef], case: CaseRef) -> CaseRef | None:
    """The source's case that can have infected ``case``: the latest collected strictly
    before it; None when there is none (the source was sampled later: it is not earlier)."""
    earlier = [c for c in source_cases if c.collected_at < case.collected_at]
    return max(earlier) if earlier else None


def links(source_cases: Iterable[CaseRef], claims_naming: Iterable[Claim]) -> dict[str, Link]:
    """The links (by alert id) out of one source person: each claim naming them whose case
    is later than one of theirs."""
    held = tuple(source_cases)
    out: dict[str, Link] = {}
    for c in claims_naming:
        source = source_case(held, c.case)
        if source is not None:
            out[c.alert_id] = Link(
                c.alert_id, source, c.case, c.venue_id, c.province, c.exposure_at
            )
    return dict(sorted(out.items()))


V = TypeVar("V")


def diff(old: Mapping[str, V], new: Mapping[str, V]) -> tuple[list[tuple[str, V]], list[str]]:
    """What changed from ``old`` to ``new`` (both by id): ``(upserted, removed)``, sorted by
    id; an unchanged entry is in neither, so a redelivered event emits nothing."""
    upserted = sorted((k, v) for k, v in new.items() if old.get(k) != v)
    removed = sorted(k for k in old if k not in new)
    return upserted, removed


@dataclass(frozen=True, slots=True)
class Node:
    """A case of a chain graph and its generation."""

    case: CaseRef
    generation: int


@dataclass(frozen=True, slots=True)
class Graph:
    """Chains as a graph: cases (with generations) in sample order, links, and the venues the
    links went through (sorted)."""

    nodes: tuple[Node, ...]
    links: tuple[Link, ...]
    venues: tuple[str, ...]

    @property
    def generations(self) -> int:
        """How many generations the graph spans (0 when it is empty)."""
        return 1 + max(n.generation for n in self.nodes) if self.nodes else 0


def chain_graph(given: Iterable[Link]) -> Graph:
    """The graph of ``given`` links, generations included.

    A case no link reaches is generation 0; another is one more than the lowest generation
    of its sources. Links go from an earlier sample to a later one, so the cases are taken
    in sample order and each source's generation is known before its targets'. A link that
    does not (inconsistent input) is ignored for generations rather than looping.
    """
    all_links = sorted(set(given), key=lambda k: (k.case, k.source, k.alert_id))
    sources: dict[CaseRef, set[CaseRef]] = {}
    cases: set[CaseRef] = set()
    for link in all_links:
        cases.update((link.source, link.case))
        sources.setdefault(link.case, set()).add(link.source)
    generation: dict[CaseRef, int] = {}
    for case in sorted(cases):
        known = [generation[s] for s in sources.get(case, ()) if s in generation]
        generation[case] = 1 + min(known) if known else 0
    return Graph(
        nodes=tuple(Node(c, generation[c]) for c in sorted(cases)),
        links=tuple(all_links),
        venues=tuple(sorted({link.venue_id for link in all_links})),
    )
