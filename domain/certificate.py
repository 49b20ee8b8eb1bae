"""Vaccination certificates: a signed, compact QR payload (docs/certificates.md).

In the spirit of the EU Digital COVID Certificate (HC1: base45 of a signed CBOR structure),
smaller and with one algorithm::

    payload   "CT1:" + base45(envelope)                       (RFC 9285 base45)
    envelope  CBOR array [signed: bstr, signature: bstr(64)]
    signed    CBOR map {"v": 1, "kid": text, "iat": int, "exp": int,
                        "sub": text, "by": int, "d": [[vaccine, "YYYY-MM-DD", n], ...]}
    signature Ed25519 over the exact bytes of ``signed``

``sub`` is a pseudonym of the person (:func:`pseudonym`: a keyed hash of the person id, so
the certificate names nobody, while the issuer can recompute it), ``by`` the birth year, ``d``
the doses in order: product code (``domain/vaccines.py``), local day, dose number. The
alphabet of base45 is QR's alphanumeric mode, so a QR code holds it at 5.5 bits a character.

Verification (:func:`verify`) needs only public keys (:class:`PublicKeys`) and the caller's
clock. It answers a :class:`Verification`: valid with the claims, or refused with one
:class:`Refusal` reason, checked in this order: ``malformed`` (not a CT payload, bad base45
or CBOR, missing or mistyped claims), ``unknown-version`` (another ``CT<n>:`` prefix or
``v``), ``unknown-key`` (a ``kid`` not among the public keys), ``bad-signature`` (tampered,
or signed by another key under that id), ``not-yet-valid`` (``iat`` in the future beyond a
leeway), ``expired`` (from the second ``exp`` on). Nothing of an unverified payload is
returned but the reason.

Keys: :class:`CertificateKeys` holds Ed25519 private keys by id (setting
``COVIDTECH_CERT_KEYS``, ``kid:base64(32-byte seed)`` pairs): the first signs, every one's
public key is published and verifies, so a key is rotated with an overlap as token keys are.

Pure: no I/O, the clock is passed in.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import io
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from typing import Any, TypeGuard

import cbor2
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from domain.coverage import local_date
from domain.keys import KEY_ID, keys_by_id, parse_key_list
from domain.vaccines import VACCINES

__all__ = [
    "ALGORITHM",
    "CLAIMS_VERSION",
    "DEFAULT_VALIDITY",
    "MAX_PAYLOAD_LENGTH",
    "PREFIX",
    "CertificateClaims",
    "CertificateDose",
    "CertificateKeys",
    "PublicKeys",
    "Refusal",
    "Verification",
    "b45decode",
    "b45encode",
    "certificate_doses",
    "issue",
    "pseudonym",
    "verify",
]

#: The payload's prefix names the envelope version (``CT1:``: base45, CBOR, Ed25519).
PREFIX = "CT1:"
#: The version of the signed claims (``v``).
CLAIMS_VERSION = 1
ALGORITHM = "Ed25519"
#: Longest payload looked at; anything longer is refused as malformed before decoding
#: (a certificate of 20 doses is about 900 characters).
MAX_PAYLOAD_LENGTH = 1200
#: Most doses a certificate lists.
MAX_DOSES = 20
DEFAULT_VALIDITY = timedelta(days=365)
#: Tolerated clock difference between the issuer and the verifier for ``iat``.
DEFAULT_LEEWAY = timedelta(seconds=60)
#: The last second a certificate may name: the end of 2999 (as tokens, ``covidtech.tokens``).
MAX_EPOCH = 32503680000 - 1

_PSEUDONYM_LABEL = b"covidtech/certificate-pseudonym/v1"
_PSEUDONYM = re.compile(r"[a-z2-7]{1,64}")
_VACCINE_CODE = re.compile(r"[A-Z0-9_]{1,32}")
_PREFIX = re.compile(r"CT([0-9]{1,3}):")
_CLAIM_KEYS = frozenset({"v", "kid", "iat", "exp", "sub", "by", "d"})


class Refusal(StrEnum):
    """Why a payload is not a valid certificate (stable words of the API and the CLI)."""

    MALFORMED = "malformed"
    UNKNOWN_VERSION = "unknown-version"
    UNKNOWN_KEY = "unknown-key"
    BAD_SIGNATURE = "bad-signature"
    NOT_YET_VALID = "not-yet-valid"
    EXPIRED = "expired"


@dataclass(frozen=True, slots=True)
class CertificateDose:
    """One dose as a certificate lists it: product code, local day, dose number (1-based)."""

    vaccine: str
    day: date
    number: int

    @property
    def vaccine_name(self) -> str | None:
        """The product's readable name; None for a code this version does not know."""
        product = VACCINES.get(self.vaccine)
        return product.name if product is not None else None


@dataclass(frozen=True, slots=True)
class CertificateClaims:
    """What a certificate says, once verified."""

    version: int
    kid: str
    issued_at: datetime
    expires_at: datetime
    subject: str
    birth_year: int
    doses: tuple[CertificateDose, ...]

    @property
    def doses_to_complete(self) -> int:
        """Doses of the primary series: 1 if the first dose's product is single-dose (as
        "Dose coverage" in ``domain/coverage.py``), else 2 (unknown products count as 2)."""
        first = VACCINES.get(self.doses[0].vaccine) if self.doses else None
        return 1 if first is not None and first.single_dose else 2

    @property
    def fully_vaccinated(self) -> bool:
        """Whether the primary series is complete."""
        return len(self.doses) >= self.doses_to_complete

    def as_dict(self) -> dict[str, Any]:
        """The claims as JSON-ready values (the verification route and the CLI print them)."""
        return {
            "version": self.version,
            "kid": self.kid,
            "issued_at": _iso(self.issued_at),
            "expires_at": _iso(self.expires_at),
            "subject": self.subject,
            "birth_year": self.birth_year,
            "doses": [
                {
                    "number": d.number,
                    "vaccine": d.vaccine,
                    "vaccine_name": d.vaccine_name,
                    "date": d.day.isoformat(),
                }
                for d in self.doses
            ],
            "doses_to_complete": self.doses_to_complete,
            "fully_vaccinated": self.fully_vaccinated,
        }


@dataclass(frozen=True, slots=True)
class Verification:
    """The answer of :func:`verify`: ``claims`` when valid, else a ``reason`` and a detail."""

    claims: CertificateClaims | None
    reason: Refusal | None = None
    detail: str = ""

    @property
    def valid(self) -> bool:
        return self.claims is not None

    @classmethod
    def refused(cls, reason: Refusal, detail: str) -> Verification:
        return cls(None, reason, detail)


# ------------------------------------------------------------------------------ keys


def _public_key(kid: str, raw: bytes) -> Ed25519PublicKey:
    if len(raw) != 32:
        raise ValueError(f"public key {kid!r} must be 32 bytes (raw Ed25519)")
    return Ed25519PublicKey.from_public_bytes(raw)


def _signing_key(kid: str, seed: bytes) -> Ed25519PrivateKey:
    if len(seed) != 32:
        raise ValueError(f"the seed of key {kid!r} must be 32 bytes")
    return Ed25519PrivateKey.from_private_bytes(seed)


def _b64(text: str) -> bytes:
    padded = text.strip() + "=" * (-len(text.strip()) % 4)
    try:
        return base64.b64decode(padded.replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("is not base64") from None


class PublicKeys:
    """Ed25519 public keys by id: what a verifier needs, and all it needs."""

    def __init__(self, entries: Iterable[tuple[str, bytes]]) -> None:
        self._keys = keys_by_id(entries, _public_key)

    @classmethod
    def from_document(cls, doc: Any) -> PublicKeys:
        """The keys of the public key endpoint's answer (``{"keys": [{"kid", "alg",
        "public_key"}]}``); raises ``ValueError`` naming what is wrong."""
        items = doc.get("keys") if isinstance(doc, dict) else None
        if not isinstance(items, list):
            raise ValueError('a key document is {"keys": [{"kid", "alg", "public_key"}, ...]}')
        entries = []
        for n, item in enumerate(items, 1):
            if not isinstance(item, dict) or not all(
                isinstance(item.get(k), str) for k in ("kid", "alg", "public_key")
            ):
                raise ValueError(f"key {n} needs string kid, alg and public_key")
            if item["alg"] != ALGORITHM:
                raise ValueError(f"key {n}: alg must be {ALGORITHM}")
            try:
                raw = _b64(item["public_key"])
            except ValueError as e:
                raise ValueError(f"key {n}: public_key {e}") from None
            entries.append((item["kid"], raw))
        return cls(entries)

    def document(self) -> dict[str, Any]:
        """The public key endpoint's answer: every key, base64 of its 32 raw bytes."""
        return {
            "keys": [
                {
                    "kid": kid,
                    "alg": ALGORITHM,
                    "public_key": base64.b64encode(
                        key.public_bytes(Encoding.Raw, PublicFormat.Raw)
                    ).decode(),
                }
                for kid, key in self._keys.items()
            ]
        }

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(self._keys)

    def key(self, kid: str) -> Ed25519PublicKey | None:
        return self._keys.get(kid)


class CertificateKeys:
    """Ed25519 signing keys by id: the first signs, every one's public key verifies."""

    def __init__(self, entries: Sequence[tuple[str, bytes]]) -> None:
        self._keys = keys_by_id(entries, _signing_key)
        self.signing_id = entries[0][0]
        self.public = PublicKeys(
            (kid, k.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))
            for kid, k in self._keys.items()
        )

    @classmethod
    def parse(cls, text: str) -> CertificateKeys:
        """``"2026-12:<base64 seed>,2025-12:<base64 seed>"`` -> two keys, ``2026-12``
        signing. Raises ``ValueError`` naming what is wrong (never the seed)."""
        entries: list[tuple[str, bytes]] = []
        for kid, seed in parse_key_list(text, "<base64 of a 32-byte seed>"):
            try:
                entries.append((kid, _b64(seed)))
            except ValueError as e:
                raise ValueError(f"the seed of key {kid!r} {e}") from None
        return cls(entries)

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(self._keys)

    def sign(self, kid: str, message: bytes) -> bytes:
        key = self._keys.get(kid)
        if key is None:
            raise ValueError(f"no key {kid!r} in the key set")
        return key.sign(message)


# ------------------------------------------------------------------------------ issuing


def pseudonym(secret: str | bytes, person_id: str) -> str:
    """The person's pseudonym on certificates: 80 bits of HMAC-SHA256 under a key derived
    from ``secret`` with a purpose label, as 16 lower-case base32 characters. Stable for a
    person while the secret stays; without the secret it names nobody."""
    raw = secret.encode() if isinstance(secret, str) else secret
    key = hmac.new(raw, _PSEUDONYM_LABEL, hashlib.sha256).digest()
    mac = hmac.new(key, person_id.encode(), hashlib.sha256).digest()[:10]
    return base64.b32encode(mac).decode().lower()


def certificate_doses(doses: Iterable[tuple[str, datetime, str]]) -> tuple[CertificateDose, ...]:
    """A person's doses (``dose_id``, ``administered_at``, vaccine code), any order, repeats
    allowed, as a certificate lists them: deduplicated by dose id, ordered by time then dose
    id ("Dose coverage"), numbered from 1, each on its local day."""
    unique = {dose_id: (at, dose_id, vaccine) for dose_id, at, vaccine in doses}
    ordered = sorted(unique.values())
    return tuple(
        CertificateDose(vaccine, local_date(at), n)
        for n, (at, _id, vaccine) in enumerate(ordered, 1)
    )


def issue(
    keys: CertificateKeys,
    *,
    subject: str,
    birth_year: int,
    doses: Sequence[CertificateDose],
    now: datetime,
    validity: timedelta = DEFAULT_VALIDITY,
) -> str:
    """A certificate payload signed with the signing key, valid ``validity`` from ``now``."""
    if not doses:
        raise ValueError("a certificate lists at least one dose")
    if len(doses) > MAX_DOSES:
        raise ValueError(f"a certificate lists at most {MAX_DOSES} doses")
    if validity <= timedelta(0):
        raise ValueError("validity must be positive")
    issued = _epoch(now)
    claims: dict[str, Any] = {
        "v": CLAIMS_VERSION,
        "kid": keys.signing_id,
        "iat": issued,
        "exp": issued + max(1, int(validity.total_seconds())),
        "sub": subject,
        "by": birth_year,
        "d": [[d.vaccine, d.day.isoformat(), d.number] for d in doses],
    }
    try:
        _claims(claims)  # what the verifier would refuse is never issued
    except _Refused as e:
        raise ValueError(str(e)) from None
    return encode(keys, claims)


def encode(keys: CertificateKeys, claims: Mapping[str, Any], *, kid: str | None = None) -> str:
    """``claims`` signed as they are (by key ``kid``, default: the key ``claims`` names).

    :func:`issue` is the way to make a certificate; this is its last step, open to tests that
    need an authentic payload with claims :func:`issue` would refuse."""
    signed = cbor2.dumps(dict(claims), canonical=True)
    signer = kid or claims.get("kid")
    if not isinstance(signer, str):
        raise ValueError("claims name no key id")
    return envelope(signed, keys.sign(signer, signed))


def envelope(signed: bytes, signature: bytes) -> str:
    """The payload of ``signed`` bytes and their ``signature`` (tests build tampered ones)."""
    return PREFIX + b45encode(cbor2.dumps([signed, signature]))


# ------------------------------------------------------------------------------ verifying


def verify(
    payload: str, keys: PublicKeys, now: datetime, *, leeway: timedelta = DEFAULT_LEEWAY
) -> Verification:
    """Whether ``payload`` is a valid certificate at ``now`` (module docstring: the order of
    the checks); never raises for any input text."""
    instant = _epoch(now)
    try:
        signed, signature, raw = _open(payload)
    except _Refused as e:
        return Verification.refused(e.reason, str(e))
    kid = raw["kid"]
    key = keys.key(kid)
    if key is None:
        return Verification.refused(Refusal.UNKNOWN_KEY, f"no public key {kid!r}")
    try:
        key.verify(signature, signed)
    except InvalidSignature:
        return Verification.refused(
            Refusal.BAD_SIGNATURE, f"the signature does not match key {kid!r} (tampered?)"
        )
    try:
        claims = _claims(raw)
    except _Refused as e:
        return Verification.refused(e.reason, str(e))
    if claims.issued_at.timestamp() > instant + leeway.total_seconds():
        return Verification.refused(
            Refusal.NOT_YET_VALID, f"issued in the future, at {_iso(claims.issued_at)}"
        )
    if instant >= claims.expires_at.timestamp():
        return Verification.refused(Refusal.EXPIRED, f"expired at {_iso(claims.expires_at)}")
    return Verification(claims)


class _Refused(Exception):
    def __init__(self, reason: Refusal, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


def _malformed(detail: str) -> _Refused:
    return _Refused(Refusal.MALFORMED, detail)


def _open(payload: str) -> tuple[bytes, bytes, dict[str, Any]]:
    """The signed bytes, the signature and the (unverified) claims map of ``payload``."""
    if not isinstance(payload, str) or len(payload) > MAX_PAYLOAD_LENGTH:
        raise _malformed(f"not a certificate payload of at most {MAX_PAYLOAD_LENGTH} characters")
    text = payload.strip()
    head = _PREFIX.match(text)
    if head is None:
        raise _malformed(f"a certificate payload starts with {PREFIX}")
    if text[: head.end()] != PREFIX:
        raise _Refused(Refusal.UNKNOWN_VERSION, f"payload version CT{head[1]} is not CT1")
    try:
        outer = _cbor(b45decode(text[head.end() :]))
    except ValueError as e:
        raise _malformed(str(e)) from None
    if not (
        isinstance(outer, list)
        and len(outer) == 2
        and all(isinstance(x, bytes) for x in outer)
        and len(outer[1]) == 64
    ):
        raise _malformed("the envelope must be [signed bytes, 64-byte signature]")
    signed, signature = outer
    try:
        raw = _cbor(signed)
    except ValueError as e:
        raise _malformed(f"signed part: {e}") from None
    if not isinstance(raw, dict):
        raise _malformed("the signed part must be a map of claims")
    version = raw.get("v")
    if not _is_int(version):
        raise _malformed("the claims need an integer version v")
    if version != CLAIMS_VERSION:
        raise _Refused(Refusal.UNKNOWN_VERSION, f"claims version {version} is not 1")
    kid = raw.get("kid")
    if not isinstance(kid, str) or not KEY_ID.fullmatch(kid):
        raise _malformed("the claims need a key id kid")
    return signed, signature, raw


def _cbor(data: bytes) -> Any:
    """The one CBOR item that is all of ``data`` (trailing bytes are refused)."""
    stream = io.BytesIO(data)
    try:
        value = cbor2.CBORDecoder(stream).decode()
    except (cbor2.CBORError, ValueError, TypeError, OverflowError, RecursionError) as e:
        raise ValueError(f"not CBOR: {e}") from None
    if stream.tell() != len(data):
        raise ValueError("not CBOR: bytes after the item")
    return value


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _claims(raw: Mapping[str, Any]) -> CertificateClaims:
    """Typed claims of a claims map; raises :class:`_Refused` (malformed) naming the field."""
    unknown = sorted(str(k) for k in set(raw) - _CLAIM_KEYS)
    if unknown:
        raise _malformed(f"unknown claim {unknown[0]!r}")
    iat, exp, sub, by, doses = (raw.get(k) for k in ("iat", "exp", "sub", "by", "d"))
    if not (_is_int(iat) and _is_int(exp) and 0 <= iat < exp <= MAX_EPOCH):
        raise _malformed("iat and exp must be seconds since 1970, iat before exp")
    if not isinstance(sub, str) or not _PSEUDONYM.fullmatch(sub):
        raise _malformed("sub must be a pseudonym of 1-64 base32 characters")
    issued = datetime.fromtimestamp(iat, UTC)
    if not (_is_int(by) and 1850 <= by <= issued.year):
        raise _malformed("by must be a birth year between 1850 and the year of issue")
    if not isinstance(doses, list) or not 1 <= len(doses) <= MAX_DOSES:
        raise _malformed(f"d must list 1-{MAX_DOSES} doses")
    parsed = []
    for n, item in enumerate(doses, 1):
        if not (
            isinstance(item, list)
            and len(item) == 3
            and isinstance(item[0], str)
            and _VACCINE_CODE.fullmatch(item[0])
            and isinstance(item[1], str)
            and item[2] == n
            and _is_int(item[2])
        ):
            raise _malformed(f"dose {n} must be [vaccine code, YYYY-MM-DD, {n}]")
        try:
            day = date.fromisoformat(item[1]) if len(item[1]) == 10 else None
        except ValueError:
            day = None
        if day is None or day.year < 1900:
            raise _malformed(f"dose {n}: {item[1]!r} is not a day YYYY-MM-DD")
        parsed.append(CertificateDose(item[0], day, n))
    return CertificateClaims(
        version=raw["v"],
        kid=raw["kid"],
        issued_at=issued,
        expires_at=datetime.fromtimestamp(exp, UTC),
        subject=sub,
        birth_year=by,
        doses=tuple(parsed),
    )


def _epoch(value: datetime) -> int:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("times must be timezone-aware")
    return int(value.timestamp())


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


# ------------------------------------------------------------------------------ base45

_B45 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:"
_B45_VALUE = {c: i for i, c in enumerate(_B45)}


def b45encode(data: bytes) -> str:
    """Base45 (RFC 9285): each 2 bytes as 3 characters of QR's alphanumeric alphabet, a last
    odd byte as 2."""
    out: list[str] = []
    for i in range(0, len(data) - 1, 2):
        n = data[i] * 256 + data[i + 1]
        c, n = n % 45, n // 45
        d, e = n % 45, n // 45
        out += (_B45[c], _B45[d], _B45[e])
    if len(data) % 2:
        d, c = divmod(data[-1], 45)
        out += (_B45[c], _B45[d])
    return "".join(out)


def b45decode(text: str) -> bytes:
    """The bytes of base45 ``text``; raises ``ValueError`` for any text RFC 9285 refuses
    (a character outside the alphabet, a length of 3k+1, a group over its range)."""
    try:
        values = [_B45_VALUE[c] for c in text]
    except KeyError as e:
        raise ValueError(f"{e.args[0]!r} is not a base45 character") from None
    if len(values) % 3 == 1:
        raise ValueError("a base45 text cannot be 3k+1 characters long")
    out = bytearray()
    for i in range(0, len(values), 3):
        group = values[i : i + 3]
        if len(group) == 3:
            n = group[0] + group[1] * 45 + group[2] * 45 * 45
            if n > 0xFFFF:
                raise ValueError("a base45 group is out of range")
            out += n.to_bytes(2, "big")
        else:
            n = group[0] + group[1] * 45
            if n > 0xFF:
                raise ValueError("a base45 group is out of range")
            out.append(n)
    return bytes(out)
