"""Signed, expiring bearer tokens with scopes, shared by the ingest API and the read API.

A token is a JWT (RFC 7519, through PyJWT) signed with HMAC-SHA256::

    header  {"alg": "HS256", "typ": "JWT", "kid": "<key id>"}
    claims  {"sub", "aud": "covidtech", "scopes", "iat", "exp", "jti"[, "grant_id"]}

Times are whole seconds since the epoch (UTC). Keys come from a :class:`KeySet` (setting
``COVIDTECH_TOKEN_KEYS``, ``kid:secret`` pairs): the first key signs, every key verifies, so a
key is rotated with an overlap (put the new key first, drop the old one once the last token it
signed has expired). The HMAC key of each entry is derived from its secret with a purpose label,
and QR codes are signed with a key of their own (``COVIDTECH_SECRET``, ``domain/qr.py``), so a
token signature can never be replayed as a QR code signature.

Verification checks, in order: the length, the header (an unknown ``kid`` is refused as
forged), the signature and audience (PyJWT; only ``HS256`` is accepted, so ``alg: none`` and
algorithm confusion are refused), the claims, the expiry against the ``now`` the caller passes,
and finally revocation through the ``is_revoked`` hook (called with the token's ``jti`` and,
when present, its ``grant_id``). The read API's revocation set plugs in there.

Scopes (docs/design.md "Scopes"): ``moh``, ``app``, ``<kind>:<value>`` for ``province``,
``tracer``, ``venue-admin`` (a province code), ``institution`` (an id) and ``person`` (a
pseudonymous person id: the citizen's own token), and ``<kind>:<id>@<province code>`` for
``site``, ``lab`` and ``venue`` (the province they work in). A token binds at most one person
(:attr:`Claims.person`); one naming two is refused as malformed. This module checks their
shape only; whether a province code exists is the caller's business.

Pure: no I/O, the clock is passed in.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

import jwt

from domain.keys import keys_by_id, parse_key_list

__all__ = [
    "AUDIENCE",
    "MAX_TOKEN_LENGTH",
    "Claims",
    "ExpiredToken",
    "ForgedToken",
    "InvalidScope",
    "KeySet",
    "MalformedToken",
    "RevokedToken",
    "Scope",
    "ScopeKind",
    "TokenError",
    "TokenSigner",
    "issue",
    "parse_ttl",
    "verify",
]

#: The ``aud`` of every token: a JWT minted for another service under a shared key is refused.
AUDIENCE = "covidtech"
ALGORITHM = "HS256"
#: Longer tokens are refused before any work (a token with a few scopes is ~300 characters).
MAX_TOKEN_LENGTH = 4096
#: The last second a token may name (``iat``, ``exp``): the end of 2999, as for every instant
#: the APIs accept (``covidtech.instants``). Past year 9999 a datetime overflows.
MAX_EPOCH = 32503680000 - 1  # 3000-01-01T00:00:00Z
#: Tolerated clock difference between the issuer and the verifier for ``iat``.
DEFAULT_LEEWAY = timedelta(seconds=60)

_KEY_LABEL = b"covidtech/bearer-token/v1"
_VALUE = re.compile(r"[A-Za-z0-9_-]{1,64}")
_SUBJECT = re.compile(r"[\w.@:/ -]{1,128}")
_PROVINCE = re.compile(r"[0-9]{2}")


class TokenError(ValueError):
    """A bearer token that must be refused (the APIs answer 401)."""


class MalformedToken(TokenError):
    """Not a token of ours: wrong shape, bad encoding, bad claims."""


class ForgedToken(TokenError):
    """Well-formed, but the signature does not match (forged, tampered, or another secret)."""


class ExpiredToken(TokenError):
    """Authentic, but past its expiry."""


class RevokedToken(TokenError):
    """Authentic and unexpired, but its id or its grant was revoked."""


class InvalidScope(ValueError):
    """Text that is not a scope (unknown kind, missing or unexpected value)."""


class ScopeKind(StrEnum):
    """What a scope grants; the value after ``:`` narrows it (DESIGN.md "Read API")."""

    MOH = "moh"
    APP = "app"
    PROVINCE = "province"
    TRACER = "tracer"
    VENUE_ADMIN = "venue-admin"
    SITE = "site"
    LAB = "lab"
    INSTITUTION = "institution"
    #: The citizen's own token: ``person:<person id>`` (issued by ``POST /v1/people`` and
    #: ``POST /v1/people/sessions``), acting for and reading about that person only.
    PERSON = "person"
    #: A venue's own staff: ``venue:<venue id>@<province>``, scanning people's QR there only.
    VENUE = "venue"

    @property
    def takes_value(self) -> bool:
        """Whether scopes of this kind carry a value (a province code or an id)."""
        return self not in (ScopeKind.MOH, ScopeKind.APP)

    @property
    def bound_to_province(self) -> bool:
        """Whether scopes of this kind name the province they act in (``site:<id>@<code>``):
        a sample site writes for its own province, a lab results that province's samples
        (and samples addressed to it), a venue's staff scan at that venue of that province."""
        return self in (ScopeKind.SITE, ScopeKind.LAB, ScopeKind.VENUE)


@dataclass(frozen=True, slots=True, order=True)
class Scope:
    """One scope: a kind; for every kind but ``moh`` and ``app``, a value; for ``site``,
    ``lab`` and ``venue``, also the province the site, lab or venue is in."""

    kind: ScopeKind
    value: str | None = None
    province: str | None = None

    def __post_init__(self) -> None:
        if self.kind.takes_value:
            if self.value is None or not _VALUE.fullmatch(self.value):
                raise InvalidScope(
                    f"scope {self.kind.value!r} needs a value of 1-64 letters, digits, '_' or '-'"
                )
        elif self.value is not None:
            raise InvalidScope(f"scope {self.kind.value!r} takes no value")
        if self.kind.bound_to_province:
            if self.province is None or not _PROVINCE.fullmatch(self.province):
                raise InvalidScope(
                    f"scope {self.kind.value!r} names its province: "
                    f"{self.kind.value}:<id>@<two-digit province code>, e.g. "
                    f"{self.kind.value}:hn-042@01"
                )
        elif self.province is not None:
            raise InvalidScope(f"scope {self.kind.value!r} names no province")

    @classmethod
    def parse(cls, text: str) -> Scope:
        """``"site:hn-042@01"`` -> ``Scope(SITE, "hn-042", "01")``; raises
        :class:`InvalidScope`."""
        kind_text, sep, value = text.partition(":")
        try:
            kind = ScopeKind(kind_text)
        except ValueError:
            known = ", ".join(k.value for k in ScopeKind)
            raise InvalidScope(
                f"unknown scope kind {kind_text!r}; expected one of {known}"
            ) from None
        if not sep:
            return cls(kind)
        ident, at, province = value.partition("@")
        return cls(kind, ident, province if at else None)

    @property
    def province_code(self) -> str | None:
        """The province code this scope names, if any: the value of ``province``, ``tracer``
        and ``venue-admin``, the ``@`` part of ``site``, ``lab`` and ``venue`` (none for
        ``person`` and ``institution``). Whether the code exists
        is the caller's check (``domain.reference.is_province``)."""
        if self.kind in (ScopeKind.PROVINCE, ScopeKind.TRACER, ScopeKind.VENUE_ADMIN):
            return self.value
        return self.province

    def __str__(self) -> str:
        if self.value is None:
            return self.kind.value
        where = "" if self.province is None else f"@{self.province}"
        return f"{self.kind.value}:{self.value}{where}"


@dataclass(frozen=True, slots=True)
class Claims:
    """What a verified token says: who, which scopes, until when, and its ids."""

    subject: str
    scopes: frozenset[Scope]
    issued_at: datetime
    expires_at: datetime
    token_id: str
    grant_id: str | None = None

    def has(self, kind: ScopeKind | str, value: str | None = None) -> bool:
        """Whether a scope of ``kind`` is held; with ``value``, one with that value.

        ``has("site")`` is true for any ``site:<id>@<code>``; ``has("site", "hn-042")`` only
        for that site (in any province). No scope implies another (``moh`` does not imply
        write scopes); callers that want such a rule spell it out.
        """
        kind = ScopeKind(kind)
        if value is None:
            return any(s.kind is kind for s in self.scopes)
        return any(s.kind is kind and s.value == value for s in self.scopes)

    @property
    def person(self) -> str | None:
        """The person this token is bound to (its ``person:<id>`` scope), or None.

        A token binds at most one person: :meth:`TokenSigner.issue` refuses two and
        :meth:`TokenSigner.verify` refuses a token naming two as malformed."""
        for s in self.scopes:
            if s.kind is ScopeKind.PERSON:
                return s.value
        return None

    def values(self, kind: ScopeKind | str) -> frozenset[str]:
        """The values of every held scope of ``kind`` (e.g. the site ids of ``site:*``)."""
        kind = ScopeKind(kind)
        return frozenset(s.value for s in self.scopes if s.kind is kind and s.value is not None)

    def provinces(self, kind: ScopeKind | str, value: str) -> frozenset[str]:
        """The provinces in which the token acts as site or lab ``value``
        (``site:hn-042@01`` and ``site:hn-042@79`` -> ``{"01", "79"}``)."""
        kind = ScopeKind(kind)
        return frozenset(
            s.province
            for s in self.scopes
            if s.kind is kind and s.value == value and s.province is not None
        )


def _token_key(kid: str, secret: str | bytes) -> bytes:
    raw = secret.encode() if isinstance(secret, str) else secret
    if not raw:
        raise ValueError(f"the secret of key {kid!r} must not be empty")
    return hmac.new(raw, _KEY_LABEL, hashlib.sha256).digest()


class KeySet:
    """Token keys by id: the first signs, every one verifies (rotation with an overlap)."""

    def __init__(self, entries: Sequence[tuple[str, str | bytes]]) -> None:
        self._keys = keys_by_id(entries, _token_key)
        self.signing_id = entries[0][0]

    @classmethod
    def parse(cls, text: str) -> KeySet:
        """``"2026-12:secretA,2026-06:secretB"`` -> two keys, ``2026-12`` signing.

        Raises ``ValueError`` naming what is wrong (never the secret)."""
        return cls(parse_key_list(text, "<secret>"))

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(self._keys)

    def key(self, kid: str) -> bytes | None:
        return self._keys.get(kid)


class TokenSigner:
    """Issues tokens under the signing key of a :class:`KeySet`; verifies under any of it.

    A plain secret stands for a key set of one key (id ``default``)."""

    def __init__(self, keys: KeySet | str | bytes) -> None:
        self.keys = keys if isinstance(keys, KeySet) else KeySet([("default", keys)])

    def issue(
        self,
        subject: str,
        scopes: Iterable[Scope | str],
        ttl: timedelta,
        *,
        now: datetime | None = None,
        grant_id: str | None = None,
        token_id: str | None = None,
    ) -> str:
        """A new token for ``subject`` with ``scopes``, valid for ``ttl`` from ``now``."""
        if not _SUBJECT.fullmatch(subject):
            raise ValueError("subject must be 1-128 printable characters (letters, digits, ._@:/-)")
        parsed = sorted({s if isinstance(s, Scope) else Scope.parse(s) for s in scopes})
        if not parsed:
            raise InvalidScope("a token needs at least one scope")
        if _people(parsed) > 1:
            raise InvalidScope("a token binds at most one person (one person:<id> scope)")
        if ttl <= timedelta(0):
            raise ValueError("ttl must be positive")
        if grant_id is not None and not _VALUE.fullmatch(grant_id):
            raise ValueError("grant_id must be 1-64 letters, digits, '_' or '-'")
        issued = _epoch_seconds(now if now is not None else datetime.now(UTC))
        if issued + ttl.total_seconds() > MAX_EPOCH:
            raise ValueError("a token must expire before the year 3000")
        claims: dict[str, object] = {
            "sub": subject,
            "aud": AUDIENCE,
            "scopes": [str(s) for s in parsed],
            "iat": issued,
            "exp": issued + max(1, int(ttl.total_seconds())),
            "jti": token_id or secrets.token_urlsafe(12),
        }
        if grant_id is not None:
            claims["grant_id"] = grant_id
        return self.encode(claims)

    def encode(self, claims: dict[str, Any], *, kid: str | None = None) -> str:
        """``claims`` signed as they are, under key ``kid`` (default: the signing key).

        :meth:`issue` is the way to make a token; this is its last step, open to tests that
        need an authentic token with claims :meth:`issue` would refuse."""
        kid = kid or self.keys.signing_id
        key = self.keys.key(kid)
        if key is None:
            raise ValueError(f"no key {kid!r} in the key set")
        return jwt.encode(claims, key, algorithm=ALGORITHM, headers={"kid": kid})

    def verify(
        self,
        token: str,
        now: datetime,
        *,
        is_revoked: Callable[[str], bool] | None = None,
        leeway: timedelta = DEFAULT_LEEWAY,
    ) -> Claims:
        """The claims of an authentic, unexpired, unrevoked token.

        Raises :class:`MalformedToken`, :class:`ForgedToken`, :class:`ExpiredToken` or
        :class:`RevokedToken` (all :class:`TokenError`). ``is_revoked`` is asked about the
        token id and the grant id (when the token has one). A token is expired from the second
        ``exp`` on; one issued more than ``leeway`` in the future is refused as malformed.
        """
        if len(token) > MAX_TOKEN_LENGTH:
            raise MalformedToken("token too long")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as e:
            raise MalformedToken("not a JWT") from e
        kid = header.get("kid")
        if not isinstance(kid, str):
            raise MalformedToken("no key id")
        key = self.keys.key(kid)
        if key is None:
            raise ForgedToken("unknown key id")
        try:
            raw = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                audience=AUDIENCE,
                # Times are checked below against the caller's clock, with our bounds.
                options={
                    "verify_exp": False,
                    "verify_iat": False,
                    "verify_nbf": False,
                    "require": ["aud"],
                },
            )
        except jwt.InvalidSignatureError as e:
            raise ForgedToken("signature does not match") from e
        except jwt.PyJWTError as e:
            raise MalformedToken(f"bad token: {e}") from e
        claims = _parse_claims(raw)
        instant = _epoch_seconds(now)
        if claims.issued_at.timestamp() > instant + leeway.total_seconds():
            raise MalformedToken("token issued in the future")
        if instant >= claims.expires_at.timestamp():
            raise ExpiredToken(f"token expired at {claims.expires_at.isoformat()}")
        if is_revoked is not None and (
            is_revoked(claims.token_id)
            or (claims.grant_id is not None and is_revoked(claims.grant_id))
        ):
            raise RevokedToken("token revoked")
        return claims


def issue(
    secret: KeySet | str | bytes,
    subject: str,
    scopes: Iterable[Scope | str],
    ttl: timedelta,
    *,
    now: datetime | None = None,
    grant_id: str | None = None,
) -> str:
    """A new token; see :meth:`TokenSigner.issue`."""
    return TokenSigner(secret).issue(subject, scopes, ttl, now=now, grant_id=grant_id)


def verify(
    secret: KeySet | str | bytes,
    token: str,
    now: datetime,
    *,
    is_revoked: Callable[[str], bool] | None = None,
) -> Claims:
    """The claims of a valid token; see :meth:`TokenSigner.verify`."""
    return TokenSigner(secret).verify(token, now, is_revoked=is_revoked)


_TTL = re.compile(r"(\d+)([smhd])")
_TTL_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_ttl(text: str) -> timedelta:
    """``"90s"``, ``"30m"``, ``"12h"``, ``"7d"`` -> timedelta; raises ``ValueError``."""
    m = _TTL.fullmatch(text.strip())
    if m is None or int(m.group(1)) == 0:
        raise ValueError(f"ttl {text!r} must look like 90s, 30m, 12h or 7d")
    return timedelta(seconds=int(m.group(1)) * _TTL_UNITS[m.group(2)])


def is_scope_value(text: str) -> bool:
    """Whether ``text`` can be the value of a scope (``site:<value>``): 1-64 ASCII letters,
    digits, ``_`` or ``-``. Ids a client names for a scope check are held to it before they
    reach a message or a header."""
    return _VALUE.fullmatch(text) is not None


def _people(scopes: Iterable[Scope]) -> int:
    return sum(1 for s in scopes if s.kind is ScopeKind.PERSON)


def _epoch_seconds(value: datetime) -> int:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("times must be timezone-aware")
    return int(value.timestamp())


def _parse_claims(raw: dict[str, Any]) -> Claims:
    sub, scopes, iat, exp, jti = (raw.get(k) for k in ("sub", "scopes", "iat", "exp", "jti"))
    grant_id = raw.get("grant_id")
    if not isinstance(sub, str) or not isinstance(jti, str) or not jti:
        raise MalformedToken("claims need string sub and jti")
    if not all(isinstance(t, int) and not isinstance(t, bool) for t in (iat, exp)):
        raise MalformedToken("claims need integer iat and exp")
    if grant_id is not None and not isinstance(grant_id, str):
        raise MalformedToken("grant_id must be a string")
    if not isinstance(scopes, list) or not scopes or not all(isinstance(s, str) for s in scopes):
        raise MalformedToken("scopes must be a non-empty list of strings")
    try:
        parsed = frozenset(Scope.parse(s) for s in scopes)
    except InvalidScope as e:
        raise MalformedToken(f"bad scope: {e}") from e
    if _people(parsed) > 1:
        raise MalformedToken("a token binds at most one person")
    assert isinstance(iat, int) and isinstance(exp, int)
    if not (0 <= iat <= MAX_EPOCH and 0 <= exp <= MAX_EPOCH):
        raise MalformedToken("iat and exp must fall in the years 1970-2999")
    return Claims(
        subject=sub,
        scopes=parsed,
        issued_at=datetime.fromtimestamp(iat, UTC),
        expires_at=datetime.fromtimestamp(exp, UTC),
        token_id=jti,
        grant_id=grant_id,
    )
