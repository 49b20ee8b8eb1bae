"""Scope rules of the read API: who reaches which provinces on which routes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from api import auth
from api.auth import ALL_PROVINCES, authenticate, reach_of
from api.problems import Problem
from covidtech.tokens import Claims, ScopeKind, TokenSigner

SIGNER = TokenSigner("unit-test-secret-0123456789")
NOW = datetime(2021, 8, 1, 3, 0, tzinfo=UTC)


def claims(*scopes: str) -> Claims:
    token = SIGNER.issue("agency", scopes, timedelta(hours=1), now=NOW)
    return SIGNER.verify(token, NOW)


def slug(e: pytest.ExceptionInfo[Problem]) -> str:
    return e.value.kind.slug


@pytest.mark.parametrize(
    ("scopes", "route", "everything", "provinces"),
    [
        (["moh"], auth.MOH_PROVINCE_TRACER, True, set()),
        (["province:79"], auth.MOH_PROVINCE, False, {"79"}),
        (["tracer:79"], auth.MOH_TRACER, False, {"79"}),
        (["tracer:79", "province:01"], auth.MOH_PROVINCE_TRACER, False, {"79", "01"}),
        (["tracer:79", "province:01"], auth.MOH_TRACER, False, {"79"}),
    ],
)
def test_reach(
    scopes: list[str], route: frozenset[ScopeKind], everything: bool, provinces: set[str]
) -> None:
    reach = reach_of(claims(*scopes), route)
    assert reach.everything is everything
    assert reach.provinces == provinces


@pytest.mark.parametrize(
    ("scopes", "route"),
    [
        (["tracer:79"], auth.MOH_PROVINCE),
        (["province:79"], auth.MOH_TRACER),
        (["province:79", "tracer:79"], auth.MOH),
        (
            ["app", "site:s1@79", "lab:l1@79", "venue-admin:79", "institution:i1"],
            auth.MOH_PROVINCE_TRACER,
        ),
        (["person:p_a", "venue:v_a@79"], auth.MOH_PROVINCE_TRACER),
        (["app", "moh", "province:79", "tracer:79", "venue:v_a@79"], auth.PERSON),
    ],
)
def test_scopes_a_route_does_not_accept_are_403(
    scopes: list[str], route: frozenset[ScopeKind]
) -> None:
    with pytest.raises(Problem) as e:
        reach_of(claims(*scopes), route)
    assert slug(e) == "insufficient-scope" and e.value.status == 403


def test_a_person_token_reaches_its_person_only() -> None:
    reach = reach_of(claims("app", "person:p_a"), auth.PERSON)
    assert (reach.person, reach.everything, reach.provinces) == ("p_a", False, frozenset())
    assert not reach.allows("79") and not reach.allows(None)


def test_a_reach_lists_only_its_provinces_and_refuses_others() -> None:
    reach = reach_of(claims("tracer:79"), auth.MOH_TRACER)
    assert reach.provinces_for(None) == ("79",)
    assert reach.provinces_for("79") == ("79",)
    assert reach.allows("79") and not reach.allows("01") and not reach.allows(None)
    with pytest.raises(Problem) as e:
        reach.provinces_for("01")
    assert slug(e) == "insufficient-scope"
    national = reach_of(claims("moh"), auth.MOH)
    assert national.provinces_for(None) == ALL_PROVINCES and len(ALL_PROVINCES) == 63
    assert national.allows(None)


def test_authentication_problems() -> None:
    good = SIGNER.issue("agency", ["moh"], timedelta(hours=1), now=NOW)
    assert authenticate(f"Bearer {good}", SIGNER, NOW, lambda i: False).subject == "agency"
    assert authenticate(f"bearer   {good} ", SIGNER, NOW, lambda i: False).subject == "agency"
    expired = SIGNER.issue("agency", ["moh"], timedelta(minutes=1), now=NOW - timedelta(hours=1))
    other = TokenSigner("another-secret-0123456789").issue(
        "x", ["moh"], timedelta(hours=1), now=NOW
    )
    cases = {
        None: "token-missing",
        "": "token-missing",
        f"Basic {good}": "token-missing",
        "Bearer": "token-missing",
        f"Bearer {expired}": "token-expired",
        f"Bearer {other}": "token-invalid",
        "Bearer ct1.a.b": "token-invalid",
        f"Bearer {good}x": "token-invalid",
    }
    for header, expected in cases.items():
        with pytest.raises(Problem) as e:
            authenticate(header, SIGNER, NOW, lambda i: False)
        assert (slug(e), e.value.status) == (expected, 401), header
    with pytest.raises(Problem) as e:
        authenticate(f"Bearer {good}", SIGNER, NOW, lambda i: True)
    assert slug(e) == "token-revoked"
