"""Bearer tokens: issue, verify, scopes, and every way a token is refused."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import jwt
import pytest
from hypothesis import given
from hypothesis import strategies as st

from covidtech.tokens import (
    AUDIENCE,
    Claims,
    ExpiredToken,
    ForgedToken,
    InvalidScope,
    KeySet,
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
    return signer.encode({"aud": AUDIENCE, **claims})


def test_issue_then_verify_round_trips_claims() -> None:
    token = issue(SECRET, "hanoi-cdc", ["province:01", "tracer:01"], timedelta(hours=12), now=NOW)
    claims = verify(SECRET, token, NOW + timedelta(hours=1))
    assert claims.subject == "hanoi-cdc"
    assert claims.scopes == {Scope(ScopeKind.PROVINCE, "01"), Scope(ScopeKind.TRACER, "01")}
    assert claims.issued_at == NOW
    assert claims.expires_at == NOW + timedelta(hours=12)
    assert claims.grant_id is None
    assert claims.token_id


def test_a_token_is_a_jwt_with_a_key_id_and_an_audience() -> None:
    token = issue(SECRET, "app", ["app"], timedelta(minutes=5), now=NOW)
    _, _, sig = token.split(".")
    assert jwt.get_unverified_header(token) == {"alg": "HS256", "typ": "JWT", "kid": "default"}
    assert "=" not in token
    assert set(_claims(token)) == {"sub", "aud", "scopes", "iat", "exp", "jti"}
    assert _claims(token)["aud"] == AUDIENCE
    assert len(base64.urlsafe_b64decode(sig + "=")) == 32


def test_keys_rotate_with_an_overlap() -> None:
    old = TokenSigner(KeySet.parse("k1:first-secret-0123456789"))
    both = TokenSigner(KeySet.parse("k2:second-secret-0123456789,k1:first-secret-0123456789"))
    new = TokenSigner(KeySet.parse("k2:second-secret-0123456789"))
    before = old.issue("x", ["app"], timedelta(hours=1), now=NOW)
    during = both.issue("x", ["app"], timedelta(hours=1), now=NOW)
    assert jwt.get_unverified_header(during)["kid"] == "k2"  # the first key signs
    assert both.verify(before, NOW).subject == "x"  # the old key still verifies
    assert new.verify(during, NOW).subject == "x"
    with pytest.raises(ForgedToken, match="unknown key id"):
        new.verify(before, NOW)  # once dropped, its tokens are refused


def test_a_key_id_names_its_key_only() -> None:
    a = TokenSigner(KeySet.parse("k1:first-secret-0123456789"))
    b = TokenSigner(KeySet.parse("k1:other-secret-0123456789"))
    with pytest.raises(ForgedToken, match="signature"):
        a.verify(b.issue("x", ["app"], timedelta(hours=1), now=NOW), NOW)


@pytest.mark.parametrize(
    "text",
    ["", "k1", "k1:", "bad id:secret-0123456789", "k1:a-secret,k1:b-secret", "k" * 33 + ":x"],
)
def test_bad_key_sets_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        KeySet.parse(text)


def test_the_none_algorithm_and_other_audiences_are_refused() -> None:
    signer = TokenSigner(SECRET)
    claims = {"sub": "x", "scopes": ["moh"], "iat": 1, "exp": 2**31, "jti": "j"}
    unsigned = jwt.encode({"aud": AUDIENCE, **claims}, "", algorithm="none")  # "": no key
    payload = unsigned.split(".")[1]
    kid_header = base64.urlsafe_b64encode(b'{"alg":"none","kid":"default"}').rstrip(b"=")
    for token in (unsigned, f"{kid_header.decode()}.{payload}."):
        with pytest.raises((MalformedToken, ForgedToken)):
            signer.verify(token, NOW)
    with pytest.raises(MalformedToken, match=r"(?i)audience"):
        signer.verify(signer.encode({"aud": "another-service", **claims}), NOW)
    with pytest.raises(MalformedToken):
        signer.verify(signer.encode(claims), NOW)  # no audience at all


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
    header, _, sig = token.split(".")
    with pytest.raises(ForgedToken):
        verify(SECRET, f"{header}.{payload}.{sig}", NOW)


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
        "e30.e30.",
        "ct1." + "a" * 5000 + ".b",
    ],
)
def test_malformed_tokens(token: str) -> None:
    with pytest.raises(MalformedToken):
        verify(SECRET, token, NOW)


@pytest.mark.parametrize(
    "claims",
    [
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


def test_authentic_claims_that_are_not_an_object_are_malformed() -> None:
    signer = TokenSigner(SECRET)
    key = signer.keys.key("default")
    assert key is not None
    token = jwt.api_jws.encode(b'["not", "an", "object"]', key, headers={"kid": "default"})
    with pytest.raises(MalformedToken):
        signer.verify(token, NOW)


@pytest.mark.parametrize(
    ("text", "kind", "value"),
    [
        ("moh", ScopeKind.MOH, None),
        ("app", ScopeKind.APP, None),
        ("province:01", ScopeKind.PROVINCE, "01"),
        ("tracer:79", ScopeKind.TRACER, "79"),
        ("venue-admin:48", ScopeKind.VENUE_ADMIN, "48"),
        ("site:hn-042@01", ScopeKind.SITE, "hn-042"),
        ("lab:nihe_1@01", ScopeKind.LAB, "nihe_1"),
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
        "site:a b@01",
        "lab:a:b@01",
        "site:" + "x" * 65 + "@01",
        "site:hn-042",
        "lab:nihe",
        "site:hn-042@",
        "site:hn-042@1",
        "site:hn-042@ab",
        "site:hn-042@01@02",
        "province:79@01",
        "institution:i1@01",
    ],
)
def test_bad_scopes(text: str) -> None:
    with pytest.raises(InvalidScope):
        Scope.parse(text)


def test_claims_has_and_values() -> None:
    claims = Claims(
        subject="s",
        scopes=frozenset(
            {
                Scope.parse("site:a@01"),
                Scope.parse("site:a@79"),
                Scope.parse("site:b@79"),
                Scope.parse("app"),
            }
        ),
        issued_at=NOW,
        expires_at=NOW + timedelta(hours=1),
        token_id="j",
    )
    assert claims.has("site") and claims.has(ScopeKind.SITE, "a") and not claims.has("site", "c")
    assert claims.has("app") and not claims.has("app", "x")
    assert not claims.has("moh") and not claims.has("lab")
    assert claims.values("site") == {"a", "b"}
    assert claims.values("lab") == frozenset()
    assert claims.provinces("site", "a") == {"01", "79"}
    assert claims.provinces("site", "b") == {"79"} and claims.provinces("lab", "a") == frozenset()


def test_site_and_lab_scopes_name_their_province() -> None:
    scope = Scope.parse("site:hn-042@01")
    assert (scope.value, scope.province, scope.province_code) == ("hn-042", "01", "01")
    assert Scope.parse("tracer:79").province_code == "79"
    assert Scope.parse("institution:i1").province_code is None
    with pytest.raises(InvalidScope, match=r"site:<id>@<two-digit province code>"):
        Scope.parse("site:hn-042")


def test_a_person_scope_binds_the_token_to_one_person() -> None:
    signer = TokenSigner(SECRET)
    token = signer.issue("p_abc", ["app", "person:p_abc"], timedelta(days=30), now=NOW)
    claims = signer.verify(token, NOW)
    assert claims.person == "p_abc"
    assert claims.has(ScopeKind.APP) and claims.has(ScopeKind.PERSON, "p_abc")
    assert (
        signer.verify(signer.issue("x", ["app"], timedelta(hours=1), now=NOW), NOW).person is None
    )
    with pytest.raises(InvalidScope, match="at most one person"):
        signer.issue("x", ["person:p_a", "person:p_b"], timedelta(hours=1), now=NOW)
    with pytest.raises(InvalidScope, match="needs a value"):
        Scope.parse("person")
    with pytest.raises(InvalidScope, match="names no province"):
        Scope.parse("person:p_abc@01")
    # Signed by hand with two people: authentic, but refused as malformed.
    two = _resign(
        signer,
        {
            "sub": "x",
            "scopes": ["person:p_a", "person:p_b"],
            "iat": int(NOW.timestamp()),
            "exp": int(NOW.timestamp()) + 60,
            "jti": "j1",
        },
    )
    with pytest.raises(MalformedToken, match="at most one person"):
        signer.verify(two, NOW)


def test_a_venue_scope_names_its_venue_and_province() -> None:
    scope = Scope.parse("venue:v_abc@79")
    assert (scope.kind, scope.value, scope.province, scope.province_code) == (
        ScopeKind.VENUE,
        "v_abc",
        "79",
        "79",
    )
    assert str(scope) == "venue:v_abc@79"
    with pytest.raises(InvalidScope, match=r"venue:<id>@<two-digit province code>"):
        Scope.parse("venue:v_abc")
    claims = TokenSigner(SECRET).verify(
        TokenSigner(SECRET).issue("staff", ["venue:v_abc@79"], timedelta(hours=1), now=NOW), NOW
    )
    assert claims.provinces(ScopeKind.VENUE, "v_abc") == {"79"}
    assert claims.person is None


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
    with pytest.raises(ValueError):
        signer.encode({"sub": "x"}, kid="no-such-key")


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
    header = base64.urlsafe_b64encode(b'{"alg":"HS256","kid":"default"}').decode().rstrip("=")
    text = header + "." + base64.urlsafe_b64encode(data).decode().rstrip("=") + ".AAAA"
    with pytest.raises((MalformedToken, ForgedToken)):
        verify(SECRET, text, NOW)
    with pytest.raises((MalformedToken, ForgedToken)):
        verify(SECRET, base64.urlsafe_b64encode(data).decode().rstrip("=") + ".e30.AAAA", NOW)
