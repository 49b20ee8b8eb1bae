"""Signed QR payloads of venues and people (DESIGN.md "QR codes").

A venue poster encodes ``covidtech:v1:venue:<venue_id>:<sig>`` and a person's personal QR
``covidtech:v1:person:<person_id>:<sig>``. ``sig`` is the first 80 bits of
HMAC-SHA256(key, ``"<kind>:<id>"``) as 16 lower-case base32 characters, where ``key`` is derived
from the deployment secret with a purpose label (so a QR signature is never a valid token
signature, see ``covidtech/tokens.py``). Binding the kind into the MAC means a person's code
cannot be passed off as a venue's with the same id.

Why 80 bits: a forger must guess a signature online, through the ingest API, one request per
guess; 2^80 guesses are out of reach, and the payload stays short enough for a small, robust
QR code. Signatures are compared in constant time.

Ids are random (issued by the ingest API) and never contain ``:``, so the payload splits
unambiguously. Pure: standard library only.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass
from enum import StrEnum

__all__ = [
    "QR_PREFIX",
    "QR_VERSION",
    "SIGNATURE_LENGTH",
    "ForgedQr",
    "MalformedQr",
    "QrError",
    "QrKind",
    "QrSigner",
    "QrSubject",
    "parse_qr",
    "person_qr",
    "venue_qr",
]

QR_PREFIX = "covidtech"
QR_VERSION = "v1"
#: Characters of the signature: 16 base32 characters = 80 bits of HMAC-SHA256.
SIGNATURE_LENGTH = 16
#: Longest payload worth looking at; anything longer is refused before parsing.
MAX_PAYLOAD_LENGTH = 256

_KEY_LABEL = b"covidtech/qr/v1"
_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_SIG = re.compile(rf"[a-z2-7]{{{SIGNATURE_LENGTH}}}")


class QrError(ValueError):
    """A scanned payload that ingestion must reject."""


class MalformedQr(QrError):
    """Not a covidtech QR payload (wrong shape, version, kind or id)."""


class ForgedQr(QrError):
    """A well-formed payload whose signature does not match: forged or altered."""


class QrKind(StrEnum):
    """What a QR code identifies."""

    VENUE = "venue"
    PERSON = "person"


@dataclass(frozen=True, slots=True)
class QrSubject:
    """The venue or person a valid QR payload names."""

    kind: QrKind
    id: str


class QrSigner:
    """Makes and checks QR payloads under one secret; derives the key once."""

    def __init__(self, secret: str | bytes) -> None:
        raw = secret.encode() if isinstance(secret, str) else secret
        if not raw:
            raise ValueError("the QR secret must not be empty")
        self._key = hmac.new(raw, _KEY_LABEL, hashlib.sha256).digest()

    def signature(self, kind: QrKind, subject_id: str) -> str:
        """The 16-character signature of ``kind`` and ``subject_id``."""
        mac = hmac.new(self._key, f"{kind.value}:{subject_id}".encode(), hashlib.sha256).digest()
        return base64.b32encode(mac[:10]).decode("ascii").lower()

    def payload(self, kind: QrKind, subject_id: str) -> str:
        """The QR payload of a venue or a person; ``ValueError`` for an id we never issue."""
        if not _ID.fullmatch(subject_id):
            raise ValueError(f"id {subject_id!r} must be 1-64 letters, digits, '_' or '-'")
        return (
            f"{QR_PREFIX}:{QR_VERSION}:{kind.value}:{subject_id}:{self.signature(kind, subject_id)}"
        )

    def parse(self, payload: str) -> QrSubject:
        """The subject of a valid payload; raises :class:`MalformedQr` or :class:`ForgedQr`."""
        if len(payload) > MAX_PAYLOAD_LENGTH:
            raise MalformedQr("payload too long for a covidtech QR code")
        parts = payload.split(":")
        if len(parts) != 5 or parts[0] != QR_PREFIX:
            raise MalformedQr("not a covidtech QR code")
        _, version, kind_text, subject_id, sig = parts
        if version != QR_VERSION:
            raise MalformedQr(f"unsupported QR version {version[:8]!r}")
        try:
            kind = QrKind(kind_text)
        except ValueError:
            raise MalformedQr(f"unknown QR kind {kind_text[:16]!r}") from None
        if not _ID.fullmatch(subject_id) or not _SIG.fullmatch(sig):
            raise MalformedQr("malformed id or signature")
        if not hmac.compare_digest(sig, self.signature(kind, subject_id)):
            raise ForgedQr("QR signature does not match")
        return QrSubject(kind, subject_id)


def venue_qr(secret: str | bytes, venue_id: str) -> str:
    """The payload printed on a venue's poster."""
    return QrSigner(secret).payload(QrKind.VENUE, venue_id)


def person_qr(secret: str | bytes, person_id: str) -> str:
    """The payload of a person's personal QR code."""
    return QrSigner(secret).payload(QrKind.PERSON, person_id)


def parse_qr(secret: str | bytes, payload: str) -> QrSubject:
    """The venue or person of a scanned payload; raises :class:`MalformedQr` / :class:`ForgedQr`."""
    return QrSigner(secret).parse(payload)
