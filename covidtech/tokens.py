"""Signed, expiring bearer tokens with scopes, shared by the ingest API and the read API.

A token is three dot-separated parts::

    ct1.<base64url(claims JSON)>.<base64url(HMAC-SHA256(key, "ct1." + claims part))>

The claims are ``{"sub", "scopes", "iat", "exp", "jti"}`` and, for tokens issued under a grant,
``"grant_id"``; times are whole seconds since the epoch (UTC). The HMAC key is derived from the
deployment secret with a purpose label, so a token signature can never be replayed as a QR code
signature (``domain/qr.py`` derives its own key from the same secret).

Verification checks, in order: the shape, the signature (constant-time compare, before the
claims are even parsed, so a forger learns nothing from our parser), the claims, the expiry, and
finally revocation through the ``is_revoked`` hook (called with the token's ``jti`` and, when
present, its ``grant_id``). The read API's revocation set plugs in there.

Scopes (DESIGN.md "Read API"): ``moh``, ``app``, and ``<kind>:<value>`` for ``province``,
``tracer``, ``venue-admin`` (a province code), ``site``, ``lab``, ``institution`` (an id).
This module checks their shape only; whether a province code exists is the caller's business.

Pure: standard library only, the clock is passed in.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

__all__ = [
    "MAX_TOKEN_LENGTH",
    "TOKEN_PREFIX",
    "Claims",
    "ExpiredToken",
    "ForgedToken",
    "InvalidScope",
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

TOKEN_PREFIX = "ct1"
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
_B64URL = re.compile(r"[A-Za-z0-9_-]+")


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

    @property
    def takes_value(self) -> bool:
        """Whether scopes of this kind carry a value (a province code or an id)."""
        return self not in (ScopeKind.MOH, ScopeKind.APP)


@dataclass(frozen=True, slots=True, order=True)
class Scope:
    """One scope: a kind and, for every kind but ``moh`` and ``app``, a value."""

    kind: ScopeKind
    value: str | None = None

    def __post_init__(self) -> None:
        if self.kind.takes_value:
            if self.value is None or not _VALUE.fullmatch(self.value):
                raise InvalidScope(
                    f"scope {self.kind.value!r} needs a value of 1-64 letters, digits, '_' or '-'"
                )
        elif self.value is not None:
            raise InvalidScope(f"scope {self.kind.value!r} takes no value")

    @classmethod
    def parse(cls, text: str) -> Scope:
        """``"site:hn-042"`` -> ``Scope(SITE, "hn-042")``; raises :class:`InvalidScope`."""
        kind_text, sep, value = text.partition(":")
        try:
            kind = ScopeKind(kind_text)
        except ValueError:
            known = ", ".join(k.value for k in ScopeKind)
            raise InvalidScope(
                f"unknown scope kind {kind_text!r}; expected one of {known}"
            ) from None
        return cls(kind, value if sep else None)

    def __str__(self) -> str:
        return self.kind.value if self.value is None else f"{self.kind.value}:{self.value}"


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
        """Whether a scope of ``kind`` is held; with ``value``, that exact scope.

        ``has("site")`` is true for any ``site:<id>``; ``has("site", "hn-042")`` only for that
        site. No scope implies another (``moh`` does not imply write scopes); callers that want
        such a rule spell it out.
        """
        kind = ScopeKind(kind)
        if value is None:
            return any(s.kind is kind for s in self.scopes)
        return Scope(kind, value) in self.scopes if kind.takes_value else False

    def values(self, kind: ScopeKind | str) -> frozenset[str]:
        """The values of every held scope of ``kind`` (e.g. the site ids of ``site:*``)."""
        kind = ScopeKind(kind)
        return frozenset(s.value for s in self.scopes if s.kind is kind and s.value is not None)


class TokenSigner:
    """Issues and verifies tokens under one secret; derives the key once."""

    def __init__(self, secret: str | bytes) -> None:
        raw = secret.encode() if isinstance(secret, str) else secret
        if not raw:
            raise ValueError("the token secret must not be empty")
        self._key = hmac.new(raw, _KEY_LABEL, hashlib.sha256).digest()

    def _sign(self, signed_part: bytes) -> bytes:
        return hmac.new(self._key, signed_part, hashlib.sha256).digest()

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
        if ttl <= timedelta(0):
            raise ValueError("ttl must be positive")
        if grant_id is not None and not _VALUE.fullmatch(grant_id):
            raise ValueError("grant_id must be 1-64 letters, digits, '_' or '-'")
        issued = _epoch_seconds(now if now is not None else datetime.now(UTC))
        if issued + ttl.total_seconds() > MAX_EPOCH:
            raise ValueError("a token must expire before the year 3000")
        claims: dict[str, object] = {
            "sub": subject,
            "scopes": [str(s) for s in parsed],
            "iat": issued,
            "exp": issued + max(1, int(ttl.total_seconds())),
            "jti": token_id or secrets.token_urlsafe(12),
        }
        if grant_id is not None:
            claims["grant_id"] = grant_id
        payload = _b64encode(json.dumps(claims, separators=(",", ":"), sort_keys=True).encode())
        signed_part = f"{TOKEN_PREFIX}.{payload}".encode("ascii")
        return f"{TOKEN_PREFIX}.{payload}.{_b64encode(self._sign(signed_part))}"

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
        parts = token.split(".")
        if len(parts) != 3 or parts[0] != TOKEN_PREFIX:
            raise MalformedToken(f"not a {TOKEN_PREFIX} token")
        _, payload, signature = parts
        if not _B64URL.fullmatch(payload) or not _B64URL.fullmatch(signature):
            raise MalformedToken("token parts must be base64url")
        try:
            given = _b64decode(signature)
        except ValueError as e:
            raise MalformedToken("bad signature encoding") from e
        expected = self._sign(f"{TOKEN_PREFIX}.{payload}".encode("ascii"))
        if not hmac.compare_digest(given, expected):
            raise ForgedToken("signature does not match")
        claims = _parse_claims(payload)
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
    secret: str | bytes,
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
    secret: str | bytes,
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


def _epoch_seconds(value: datetime) -> int:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("times must be timezone-aware")
    return int(value.timestamp())


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as e:
        raise ValueError(str(e)) from e


def _parse_claims(payload: str) -> Claims:
    try:
        raw = json.loads(_b64decode(payload))
    except ValueError as e:
        raise MalformedToken("claims are not base64url JSON") from e
    if not isinstance(raw, dict):
        raise MalformedToken("claims must be a JSON object")
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
