"""Bearer tokens: issue, verify, scopes, and every way a token is refused."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from covidtech.tokens import (
    Claims,
    ExpiredToken,
    ForgedToken,
    InvalidScope,
    MalformedToken,
    RevokedToken,
    Scope,
    ScopeKind,
    TokenSigner,
    issue,
    parse_ttl,
    verify,
)

SECRET = "unit-test-secret-0123456789"
NOW = datetime(2021, 8, 1, 9, 0, tzinfo=UTC)


def _claims(token: str) -> dict[str, object]:
    payload = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


def _resign(signer: TokenSigner, claims: dict[str, object]) -> str:
    """A token with arbitrary claims, correctly signed (to test claim validation)."""
    payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    sig = signer._sign(f"ct1.{payload}".encode())
    return f"ct1.{payload}.{base64.urlsafe_b64encode(sig).rstrip(b'=').decode()}"


def test_issue_then_verify_round_trips_claims() -> None:
    token = issue(SECRET, "hanoi-cdc", ["province:01", "tracer:01"], timedelta(hours=12), now=NOW)
    claims = verify(SECRET, token, NOW + timedelta(hours=1))
    assert claims.subject == "hanoi-cdc"
    assert claims.scopes == {Scope(ScopeKind.PROVINCE, "01"), Scope(ScopeKind.TRACER, "01")}
    assert claims.issued_at == NOW
    assert claims.expires_at == NOW + timedelta(hours=12)
    assert claims.grant_id is None
    assert claims.token_id


def test_token_shape_is_prefix_payload_signature_without_padding() -> None:
    token = issue(SECRET, "app", ["app"], timedelta(minutes=5), now=NOW)
    prefix, _, sig = token.split(".")
    assert prefix == "ct1"
    assert "=" not in token
    assert set(_claims(token)) == {"sub", "scopes", "iat", "exp", "jti"}
    assert len(base64.urlsafe_b64decode(sig + "=")) == 32


def test_grant_id_is_carried_and_consulted_for_revocation() -> None:
    signer = TokenSigner(SECRET)
    token = signer.issue("agency", ["province:79"], timedelta(days=7), now=NOW, grant_id="g-42")
    assert signer.verify(token, NOW).grant_id == "g-42"
    asked: list[str] = []

    def revoked(ident: str) -> bool:
        asked.append(ident)
        return ident == "g-42"

    with pytest.raises(RevokedToken):
        signer.verify(token, NOW, is_revoked=revoked)
    assert asked[-1] == "g-42"


def test_revocation_by_token_id() -> None:
    signer = TokenSigner(SECRET)
    token = signer.issue("x", ["app"], timedelta(hours=1), now=NOW)
    jti = signer.verify(token, NOW).token_id
    with pytest.raises(RevokedToken):
        signer.verify(token, NOW, is_revoked=lambda ident: ident == jti)
    assert signer.verify(token, NOW, is_revoked=lambda ident: False).token_id == jti


def test_expired_from_the_exp_second_on() -> None:
    token = issue(SECRET, "x", ["app"], timedelta(seconds=60), now=NOW)
    verify(SECRET, token, NOW + timedelta(seconds=59))
    with pytest.raises(ExpiredToken):
        verify(SECRET, token, NOW + timedelta(seconds=60))


def test_issued_in_the_future_beyond_leeway_is_refused() -> None:
    token = issue(SECRET, "x", ["app"], timedelta(hours=1), now=NOW + timedelta(minutes=10))
    with pytest.raises(MalformedToken):
        verify(SECRET, token, NOW)
    verify(
        SECRET,
        issue(SECRET, "x", ["app"], timedelta(hours=1), now=NOW + timedelta(seconds=30)),
        NOW,
    )


def test_other_secret_is_forged() -> None:
    token = issue("another-secret-9876543210", "x", ["moh"], timedelta(hours=1), now=NOW)
    with pytest.raises(ForgedToken):
        verify(SECRET, token, NOW)


def test_tampered_claims_are_forged() -> None:
    token = issue(SECRET, "x", ["app"], timedelta(hours=1), now=NOW)
    claims = _claims(token)
    claims["scopes"] = ["moh"]
    payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    prefix, _, sig = token.split(".")
    with pytest.raises(ForgedToken):
        verify(SECRET, f"{prefix}.{payload}.{sig}", NOW)


@pytest.mark.parametrize(
    "token",
    [
        "",
        "ct1",
        "ct1.a",
        "ct2.a.b",
        "ct1.a.b.c",
        "ct1.!!.abc",
        "Bearer x",
        "ct1." + "a" * 5000 + ".b",
    ],
)
def test_malformed_tokens(token: str) -> None:
    with pytest.raises(MalformedToken):
        verify(SECRET, token, NOW)


@pytest.mark.parametrize(
    "claims",
    [
        ["not", "an", "object"],
        {"sub": "x", "scopes": ["app"], "iat": 1, "jti": "j"},
        {"sub": "x", "scopes": [], "iat": 1, "exp": 2, "jti": "j"},
        {"sub": "x", "scopes": ["root"], "iat": 1, "exp": 2, "jti": "j"},
        {"sub": "x", "scopes": ["app"], "iat": "1", "exp": 2, "jti": "j"},
        {"sub": "x", "scopes": ["app"], "iat": True, "exp": 2, "jti": "j"},
        {"sub": 5, "scopes": ["app"], "iat": 1, "exp": 2, "jti": "j"},
        {"sub": "x", "scopes": ["app"], "iat": 1, "exp": 2, "jti": "j", "grant_id": 3},
    ],
)
def test_authentic_but_bad_claims_are_malformed(claims: object) -> None:
    signer = TokenSigner(SECRET)
    with pytest.raises(MalformedToken):
        signer.verify(_resign(signer, claims), NOW)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "kind", "value"),
    [
        ("moh", ScopeKind.MOH, None),
        ("app", ScopeKind.APP, None),
        ("province:01", ScopeKind.PROVINCE, "01"),
        ("tracer:79", ScopeKind.TRACER, "79"),
        ("venue-admin:48", ScopeKind.VENUE_ADMIN, "48"),
        ("site:hn-042", ScopeKind.SITE, "hn-042"),
        ("lab:nihe_1", ScopeKind.LAB, "nihe_1"),
        ("institution:viettel", ScopeKind.INSTITUTION, "viettel"),
    ],
)
def test_scope_parse_and_str(text: str, kind: ScopeKind, value: str | None) -> None:
    scope = Scope.parse(text)
    assert (scope.kind, scope.value) == (kind, value)
    assert str(scope) == text


@pytest.mark.parametrize(
    "text",
    [
        "",
        "root",
        "moh:1",
        "app:x",
        "province",
        "province:",
        "site:a b",
        "lab:a:b",
        "site:" + "x" * 65,
    ],
)
def test_bad_scopes(text: str) -> None:
    with pytest.raises(InvalidScope):
        Scope.parse(text)


def test_claims_has_and_values() -> None:
    claims = Claims(
        subject="s",
        scopes=frozenset({Scope.parse("site:a"), Scope.parse("site:b"), Scope.parse("app")}),
        issued_at=NOW,
        expires_at=NOW + timedelta(hours=1),
        token_id="j",
    )
    assert claims.has("site") and claims.has(ScopeKind.SITE, "a") and not claims.has("site", "c")
    assert claims.has("app") and not claims.has("app", "x")
    assert not claims.has("moh") and not claims.has("lab")
    assert claims.values("site") == {"a", "b"}
    assert claims.values("lab") == frozenset()


def test_issue_refuses_nonsense() -> None:
    signer = TokenSigner(SECRET)
    with pytest.raises(InvalidScope):
        signer.issue("x", [], timedelta(hours=1))
    with pytest.raises(ValueError):
        signer.issue("x", ["app"], timedelta(0))
    with pytest.raises(ValueError):
        signer.issue("", ["app"], timedelta(hours=1))
    with pytest.raises(ValueError):
        signer.issue("x", ["app"], timedelta(hours=1), grant_id="bad id")
    with pytest.raises(ValueError):
        TokenSigner("")


def test_naive_now_is_refused() -> None:
    token = issue(SECRET, "x", ["app"], timedelta(hours=1), now=NOW)
    with pytest.raises(ValueError):
        verify(SECRET, token, NOW.replace(tzinfo=None))


@pytest.mark.parametrize(
    ("text", "seconds"), [("90s", 90), ("30m", 1800), ("12h", 43200), ("7d", 604800)]
)
def test_parse_ttl(text: str, seconds: int) -> None:
    assert parse_ttl(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "12", "h", "0h", "1w", "-1h", "1.5h"])
def test_parse_ttl_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        parse_ttl(text)


@given(st.binary(min_size=0, max_size=200))
def test_random_bytes_never_verify(data: bytes) -> None:
    text = "ct1." + base64.urlsafe_b64encode(data).decode().rstrip("=") + ".AAAA"
    with pytest.raises((MalformedToken, ForgedToken)):
        verify(SECRET, text, NOW)
