"""Opaque, signed page tokens.

A page token is ``base64url(JSON) "." base64url(HMAC-SHA256[:16])``. The JSON holds the route,
the *binding* (every query parameter that decides which rows a caller may see: the province
filter after scope checks, the other filters) and the *position* (where the next page starts,
plus anything resolved on the first page, such as a default time bound, so later pages read
the same ranges). The key is derived from the deployment secret with its own label, so a page
token can never pass as a bearer token or a QR signature, and vice versa.

A token is honoured only on the route it was minted for and with an identical binding: a token
minted for province A presented with province B, or edited in any byte, is refused
(:class:`InvalidPageToken`, answered 400). Scope checks run on the request's own parameters
before the token is opened, so a token can never widen what a caller sees.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import Any

__all__ = ["MAX_PAGE_TOKEN_LENGTH", "InvalidPageToken", "PageTokens"]

MAX_PAGE_TOKEN_LENGTH = 2048
_KEY_LABEL = b"covidtech/page-token/v1"
_MAC_BYTES = 16


class InvalidPageToken(ValueError):
    """A page token that is malformed, forged, or minted for another query."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as e:
        raise InvalidPageToken("page token is not base64url") from e


def _canonical(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=True).encode()


class PageTokens:
    """Mints and opens page tokens under one secret."""

    def __init__(self, secret: str | bytes) -> None:
        raw = secret.encode() if isinstance(secret, str) else secret
        if not raw:
            raise ValueError("the page token secret must not be empty")
        self._key = hmac.new(raw, _KEY_LABEL, hashlib.sha256).digest()

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self._key, payload, hashlib.sha256).digest()[:_MAC_BYTES]

    def mint(self, route: str, binding: Mapping[str, Any], position: Mapping[str, Any]) -> str:
        """A token that resumes ``route`` at ``position`` for exactly this ``binding``."""
        payload = _canonical({"r": route, "b": dict(binding), "p": dict(position)})
        return f"{_b64(payload)}.{_b64(self._mac(payload))}"

    def open(self, token: str, route: str, binding: Mapping[str, Any]) -> dict[str, Any]:
        """The position in ``token``; raises :class:`InvalidPageToken` unless it is authentic
        and was minted for ``route`` with an identical ``binding``."""
        if len(token) > MAX_PAGE_TOKEN_LENGTH:
            raise InvalidPageToken("page token too long")
        body, sep, mac = token.partition(".")
        if not sep or not body or not mac:
            raise InvalidPageToken("page token is malformed")
        payload = _unb64(body)
        if not hmac.compare_digest(_unb64(mac), self._mac(payload)):
            raise InvalidPageToken("page token is not authentic")
        try:
            data = json.loads(payload)
        except ValueError as e:  # cannot happen for tokens we signed; be strict anyway
            raise InvalidPageToken("page token is malformed") from e
        if not isinstance(data, dict) or not isinstance(data.get("p"), dict):
            raise InvalidPageToken("page token is malformed")
        if data.get("r") != route:
            raise InvalidPageToken("page token belongs to another list")
        if _canonical(data.get("b")) != _canonical(dict(binding)):
            raise InvalidPageToken(
                "page token belongs to another query; repeat the query parameters of the first "
                "page (province, filters) with it"
            )
        position: dict[str, Any] = data["p"]
        return position
