"""Property-based fuzzing of the ingest API against its own OpenAPI document (schemathesis).

The app runs for real (uvicorn on an ephemeral port, the real Kafka, topics of its own);
schemathesis generates valid and invalid requests for every operation of ``/openapi.json``
(which lists every route: ``tests/unit/test_ingest_openapi_routes.py``) and checks that
nothing answers 5xx and that every answer (status code, content type, headers, body) conforms
to the document. Requests carry one token holding every scope kind (:func:`fuzz_token`), so
the handlers behind the scope checks are exercised; schemathesis also checks that each
operation refuses requests without it.

A schema cannot say what a signed QR payload, a known venue or a recent instant is, so purely
generated bodies stop at validation (422). Half of the valid-mode cases are therefore made
*realistic* before they are sent (:func:`realise`): the fields a schema cannot get right are
replaced with real ones (QR payloads of people and a venue registered at set-up, province 79,
the token's site, lab and institution, instants near now, samples collected at set-up), so
those requests reach the event log and the conflict and duplicate paths behind it. The last
test checks that every write operation was answered 2xx at least once, so a fuzz that only
ever hits 401 or 422 cannot pass unnoticed.

``positive_data_acceptance`` is left out on purpose: schema-valid requests are refused by
rules a JSON schema cannot state (an unknown province code, an unsigned QR, a scan older than
72 h, a sample never collected), with 4xx.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import negative_data_rejection, positive_data_acceptance

from covidtech.settings import Settings
from domain.programme import DiscardReason
from domain.vaccines import VACCINES
from producers.app import create_app
from producers.openapi import openapi_document
from tests.support import served_in_thread
from tests.unit.ingest_support import SCOPES

pytestmark = [
    pytest.mark.integration,
    # schemathesis 4.x draws from `random` inside its strategies, which Hypothesis reports as
    # deprecated; it is the library's business, not this suite's (filterwarnings = error).
    pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisDeprecationWarning"),
]

#: Examples per (operation, mode); ``FUZZ_EXAMPLES=200`` for a longer run than CI's.
MAX_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "25"))
#: What issue 13 asks of each API's fuzz, counted over the whole module.
MIN_CASES = 300


#: Requests sent per (method, path, mode), filled as the fuzz runs; the last test sums them.
SENT: dict[tuple[str, str, str], int] = {}
#: Status codes answered per (method, path), and over the whole module.
ANSWERED: dict[tuple[str, str], Counter[int]] = {}


def fuzz_token(s: Settings) -> str:
    """The one token of every request (the only place this module signs one)."""
    return s.token_signer().issue("fuzzer", SCOPES, timedelta(hours=2))


def rfc3339(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@pytest.fixture(scope="module")
def base_url(env: Settings) -> Iterator[str]:
    """The ingest API served by uvicorn in a thread of its own (its own event loop)."""
    yield from served_in_thread(create_app(env), "ingest-api-fuzz")


@pytest.fixture(scope="module")
def headers(env: Settings) -> dict[str, str]:
    return {"Authorization": f"Bearer {fuzz_token(env)}"}


@dataclass(frozen=True)
class World:
    """What the realistic cases name: registered through the API before the fuzz."""

    venue_id: str
    venue_qr: str
    people: tuple[tuple[str, str], ...]  # (person_id, person_qr)
    samples: tuple[str, ...]


@pytest.fixture(scope="module")
def world(base_url: str, headers: dict[str, str]) -> World:
    with httpx.Client(base_url=base_url, headers=headers, timeout=30) as http:
        r = http.post(
            "/v1/venues",
            json={
                "name": "Fuzz Cafe",
                "address": "1 Le Loi",
                "province": "79",
                "district": "760",
                "category": "restaurant",
            },
        )
        assert r.status_code == 201, r.text
        venue = r.json()
        people = []
        for _ in range(6):
            r = http.post("/v1/people", json={"province": "79", "district": "760"})
            assert r.status_code == 201, r.text
            people.append((r.json()["person_id"], r.json()["person_qr"]))
        samples = []
        collected = rfc3339(datetime.now(UTC) - timedelta(hours=2))
        for n, (_, person_qr) in enumerate(people):
            sample_id = f"fuzz-sample-{n}"
            r = http.post(
                "/v1/samples",
                json={
                    "sample_id": sample_id,
                    "province": "79",
                    "test_type": "PCR",
                    "collected_at": collected,
                    "members": [{"person_qr": person_qr}],
                },
            )
            assert r.status_code == 201, r.text
            samples.append(sample_id)
    return World(venue["venue_id"], venue["venue_qr"], tuple(people), tuple(samples))


@pytest.fixture(scope="module")
def ingest_schema(base_url: str) -> Any:
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    # Every request carries the fuzz token; the `ignored_auth` check still proves that each
    # operation refuses requests without one.
    schema.config.generation.update(with_security_parameters=False)
    return schema


# ------------------------------------------------------------------------ realistic cases

Draw = Callable[[st.SearchStrategy[Any]], Any]
#: Real values for a field, given the generated one.
Realistic = Callable[[Any], Any]


def _fields(world: World, draw: Draw) -> dict[str, Realistic]:
    """Per field name, how to make its generated value a real one."""
    now = datetime.now(UTC)

    def const(value: Any) -> Realistic:
        return lambda _: value

    def one_of(*values: Any) -> Realistic:
        return lambda _: draw(st.sampled_from(values))

    def instant(earliest: timedelta, latest: timedelta) -> Realistic:
        seconds = st.integers(int(earliest.total_seconds()), int(latest.total_seconds()))
        return lambda _: rfc3339(now + timedelta(seconds=draw(seconds)))

    def text(max_size: int) -> Realistic:
        # Any printable text (Vietnamese included), neither blank nor with control characters.
        printable = st.characters(codec="utf-8", exclude_categories=["Cc", "Cs"])
        strategy = st.text(printable, min_size=1, max_size=max_size).filter(str.strip)
        return lambda _: draw(strategy)

    def person(i: int) -> Realistic:
        return lambda _: draw(st.sampled_from(world.people))[i]

    def members(old: Any) -> Any:
        # Distinct people (a pool names each once), each by QR or by id as generated.
        if not isinstance(old, list):
            return old
        chosen = draw(st.permutations(world.people))[: len(old)]
        return [
            {
                **({"person_id": p[0]} if isinstance(m, dict) and "person_id" in m else {}),
                **({"person_qr": p[1]} if isinstance(m, dict) and "person_qr" in m else {}),
                "symptom_onset": draw(st.sampled_from([None, now.date().isoformat()])),
            }
            for m, p in zip(old, chosen, strict=False)
        ]

    def target() -> dict[str, int]:
        first = draw(st.integers(0, 1_000_000))
        return {"people_vaccinated": first, "people_fully_vaccinated": draw(st.integers(0, first))}

    def targets(_: Any) -> dict[str, Any]:
        groups = st.sets(st.sampled_from(["GENERAL", "HEALTH_WORKER", "AGE_65_PLUS"]), min_size=1)
        return {group: target() for group in sorted(draw(groups))}

    def doses(old: Any) -> Any:
        # An allocation's or a discard's number of doses, or a batch of doses.
        return _replace(old, fields) if isinstance(old, list) else draw(st.integers(1, 1000))

    reasons = {r.value for r in DiscardReason}
    cancellation_reason = text(200)
    recent = instant(-timedelta(hours=1), timedelta(0))
    fields: dict[str, Realistic] = {
        "name": text(200),
        "address": text(500),
        "category": text(64),
        "district": const("760"),
        # A discard's reason is an enum (kept), a cancellation's is text.
        "reason": lambda old: old if old in reasons else cancellation_reason(old),
        "person_id": person(0),
        "person_qr": person(1),
        "members": members,
        "venue_qr": const(world.venue_qr),
        "province": const("79"),
        "residence_province": const("79"),
        "travelled_from_province": one_of(None, "01", "79"),
        "birth_year": one_of(1950, 1985, 2008),
        "vaccine": one_of(*sorted(VACCINES)),
        "doses": doses,
        "site_id": const("s1"),
        "lab_id": const("l1"),
        "institution_id": const("i1"),
        "scanned_at": recent,
        "collected_at": recent,
        "administered_at": recent,
        "discarded_at": recent,
        "resulted_at": recent,
        "appointment_at": instant(timedelta(days=1), timedelta(days=14)),
        "target_date": lambda _: (
            (now + timedelta(days=draw(st.integers(1, 60)))).date().isoformat()
        ),
        "targets": targets,
    }
    return fields


def _replace(value: Any, fields: dict[str, Realistic]) -> Any:
    if isinstance(value, dict):
        return {k: fields[k](v) if k in fields else _replace(v, fields) for k, v in value.items()}
    if isinstance(value, list):
        return [_replace(v, fields) for v in value]
    return value


def realise(case: Any, world: World, draw: Draw) -> None:
    """Give ``case`` the values a schema cannot generate (see the module's docstring)."""
    fields = _fields(world, draw)
    if isinstance(case.body, dict | list):
        case.body = _replace(case.body, fields)
    params = case.path_parameters or {}
    if "venue_id" in params:
        params["venue_id"] = world.venue_id
    if "sample_id" in params:
        params["sample_id"] = draw(st.sampled_from(world.samples))
    if "province" in params:
        params["province"] = "79"


# ------------------------------------------------------------------------------ the fuzz

#: The list of each batch route's body; its items are judged one by one.
BATCHES = {"scans", "doses", "registrations"}


def negative_batches_rejected(ctx: Any, response: Any, case: Any) -> bool | None:
    """schemathesis's ``negative_data_rejection``, knowing that a batch is judged per item.

    A batch holding a schema-violating item is answered 200 when its other items were
    written, with that item ``rejected`` in the results (docs/ingest-api.md): such an answer
    passes if at least one item was rejected. Any other answer is judged as schemathesis does.
    """
    body = case.body
    if (
        200 <= response.status_code < 300
        and isinstance(body, dict)
        and BATCHES & body.keys()
        and response.json().get("rejected", 0) >= 1
    ):
        return None
    return negative_data_rejection(ctx, response, case)


def _has_inputs(operation: dict[str, Any]) -> bool:
    return bool(operation.get("parameters") or operation.get("requestBody"))


# Every operation of the document, with valid inputs, and with invalid ones where it has any.
CASES = [
    (method.upper(), path, mode)
    for path, item in openapi_document()["paths"].items()
    for method, operation in item.items()
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    if mode is GenerationMode.POSITIVE or _has_inputs(operation)
]
#: Operations that write (every one that takes a token but the vaccine list).
WRITES = {
    (method.upper(), path)
    for path, item in openapi_document()["paths"].items()
    for method, operation in item.items()
    if operation.get("security") and method != "get"
}


@pytest.mark.parametrize(
    ("method", "path", "mode"), CASES, ids=[f"{m} {p} {g.value}" for m, p, g in CASES]
)
def test_the_ingest_api_conforms_to_its_openapi_document(
    ingest_schema: Any,
    base_url: str,
    headers: dict[str, str],
    world: World,
    method: str,
    path: str,
    mode: GenerationMode,
) -> None:
    operation = ingest_schema[path][method]
    key = (method, path, mode.value)
    SENT[key] = 0
    answered = ANSWERED.setdefault((method, path), Counter())

    @given(case=operation.as_strategy(mode), data=st.data())
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    def fuzz(case: Any, data: st.DataObject) -> None:
        if mode is GenerationMode.POSITIVE and data.draw(st.booleans(), label="realistic"):
            realise(case, world, data.draw)
        SENT[key] += 1
        # case.call_and_validate, split so that the answer is counted before it is judged.
        transport = {"base_url": base_url, "headers": dict(headers), "timeout": 30}
        response = case.call(**transport)
        answered[response.status_code] += 1
        case.validate_response(
            response,
            headers=headers,
            excluded_checks=[positive_data_acceptance, negative_data_rejection],
            additional_checks=[negative_batches_rejected],
            transport_kwargs=transport,
        )

    fuzz()


def test_the_fuzz_sent_at_least_300_cases_and_reached_every_write() -> None:
    """Runs last (pytest keeps file order): the figures quoted in docs/security.md."""
    if set(SENT) != {(m, p, g.value) for m, p, g in CASES}:
        pytest.skip("only part of the fuzz ran (a -k selection); nothing to count")
    total = sum(SENT.values())
    statuses = sum(ANSWERED.values(), Counter[int]())
    print(f"ingest API fuzz: {total} cases over {len(CASES)} (operation, mode) pairs")
    print(f"answers: {dict(sorted(statuses.items()))}")
    assert total >= MIN_CASES, SENT
    assert not [s for s in statuses if s >= 500], statuses
    unwritten = {op for op in WRITES if not any(200 <= s < 300 for s in ANSWERED[op])}
    assert not unwritten, {op: dict(ANSWERED[op]) for op in unwritten}
