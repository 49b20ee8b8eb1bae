"""Input at the edges that used to answer 500: each is refused as invalid input instead.

Reproduced by the security review (issue 13): timestamps at the ends of the calendar with an
offset, a lone surrogate escape, JSON nested thousands deep, a token whose expiry is past
year 9999, and ids named in a body that end up in a header.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from api.params import ParamError, parse_datetime
from covidtech.instants import InstantError, parse_instant
from covidtech.instants import parse_instant as parse_timestamp
from covidtech.jsonbody import BodyError, parse_json
from covidtech.tokens import (
    AUDIENCE,
    MalformedToken,
    TokenSigner,
    is_scope_value,
)

EDGES = (
    "0001-01-01T00:00:00+01:00",
    "9999-12-31T23:59:59-01:00",
    "1969-12-31T23:59:59Z",
    "3000-01-01T00:00:00Z",
    "2021-02-30T00:00:00Z",
    "2021-08-01T24:00:00Z",
    "2021-08-01T10:00:00+24:00",
    "2021-08-01T10:00:00",
    "２０２１-08-01T10:00:00Z",
)


@pytest.mark.parametrize("text", EDGES)
def test_instants_outside_what_can_be_held_are_refused_by_both_apis(text: str) -> None:
    with pytest.raises(InstantError):
        parse_instant(text)
    with pytest.raises(ValueError):
        parse_timestamp(text)  # the ingest API's fields
    with pytest.raises(ParamError):
        parse_datetime(text)  # the read API's parameters


def test_instants_both_apis_accept_are_read_alike() -> None:
    for text, want in (
        ("2021-08-01T09:30:00Z", datetime(2021, 8, 1, 9, 30, tzinfo=UTC)),
        ("2021-08-01T16:30:00+07:00", datetime(2021, 8, 1, 9, 30, tzinfo=UTC)),
        ("2021-08-01t09:30:00.123456789z", datetime(2021, 8, 1, 9, 30, 0, 123456, tzinfo=UTC)),
        ("2016-12-31T23:59:60Z", datetime(2016, 12, 31, 23, 59, 59, tzinfo=UTC)),
        ("1970-01-01T00:00:00Z", datetime(1970, 1, 1, tzinfo=UTC)),
    ):
        assert parse_instant(text) == parse_timestamp(text) == parse_datetime(text) == want


def test_json_bodies_hold_unicode_text_only() -> None:
    assert parse_json(b'{"name": "Ph\\u1edf \\ud83d\\ude00"}') == {"name": "Phở 😀"}
    for raw in (
        b'{"name": "\\ud800"}',
        b'{"name": "a\\udfffb"}',
        b'{"\\ud800": 1}',
        b'[["\\ud83d"]]',
    ):
        with pytest.raises(BodyError, match="surrogate"):
            parse_json(raw)


def test_json_nested_thousands_deep_or_with_constants_is_malformed() -> None:
    with pytest.raises(BodyError, match="deep"):
        parse_json(b"[" * 8000 + b"]" * 8000)
    for raw in (b'{"x": NaN}', b"[Infinity]", b"{", b"\xff"):
        with pytest.raises(BodyError):
            parse_json(raw)


def test_a_token_cannot_name_an_instant_past_the_year_2999() -> None:
    signer = TokenSigner("a-secret-of-sixteen+")
    with pytest.raises(ValueError, match="3000"):
        signer.issue("ops", ["moh"], timedelta(days=3_000_000))
    # A token signed by hand with such an expiry is malformed (401), not a crash (500).
    claims = {"sub": "ops", "aud": AUDIENCE, "scopes": ["moh"], "iat": 1, "exp": 10**12}
    token = signer.encode({**claims, "jti": "x"})
    with pytest.raises(MalformedToken, match="1970-2999"):
        signer.verify(token, datetime.now(UTC))


def test_ids_that_reach_headers_are_plain_ascii() -> None:
    assert is_scope_value("inst-1_A")
    for text in ("trường-1", 'a", error="x', "a b", "", "x" * 65):
        assert not is_scope_value(text)


def test_an_id_named_for_a_scope_check_is_refused_before_it_reaches_a_header() -> None:
    from covidtech.tokens import Claims, Scope, ScopeKind
    from covidtech.web.problems import Problem
    from producers.service import scoped_id

    now = datetime.now(UTC)
    claims = Claims("s", frozenset({Scope.parse("institution:i-1")}), now, now, "j")
    assert scoped_id(claims, ScopeKind.INSTITUTION, "i-1", "institution_id") == "i-1"
    for named in ("trường-1", 'i-1", error="forged'):
        with pytest.raises(Problem) as refused:
            scoped_id(claims, ScopeKind.INSTITUTION, named, "institution_id")
        assert refused.value.status == 422
        assert "WWW-Authenticate" not in (refused.value.headers or {})
    with pytest.raises(Problem) as other:
        scoped_id(claims, ScopeKind.INSTITUTION, "i-2", "institution_id")
    assert other.value.status == 403
