"""Vaccination certificates (domain/certificate.py): issue, verify, refuse with a reason."""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, date, datetime, timedelta
from typing import Any

import cbor2
import pytest
import qrcode
from hypothesis import given
from hypothesis import strategies as st

from domain import certificate as cert
from domain.certificate import (
    CertificateDose,
    CertificateKeys,
    PublicKeys,
    Refusal,
    b45decode,
    b45encode,
    certificate_doses,
    envelope,
    issue,
    pseudonym,
    verify,
)

NOW = datetime(2021, 10, 1, 3, 0, tzinfo=UTC)


def seed(label: str) -> str:
    return base64.b64encode(hashlib.sha256(label.encode()).digest()).decode()


KEYS = CertificateKeys.parse(f"2021-10:{seed('a')},2021-04:{seed('b')}")
OTHER = CertificateKeys.parse(f"2021-10:{seed('someone else')}")
DOSES = certificate_doses(
    [
        ("d2", datetime(2021, 8, 30, 2, tzinfo=UTC), "AZ"),
        ("d1", datetime(2021, 7, 1, 2, tzinfo=UTC), "AZ"),
        ("d3", datetime(2021, 9, 30, 20, tzinfo=UTC), "PFIZER"),  # 1 Oct in Vietnam
        ("d1", datetime(2021, 7, 1, 2, tzinfo=UTC), "AZ"),  # a redelivery
    ]
)
SUBJECT = pseudonym("deployment-secret", "person-1")


def payload(keys: CertificateKeys = KEYS, **kw: Any) -> str:
    args: dict[str, Any] = {
        "subject": SUBJECT,
        "birth_year": 1980,
        "doses": DOSES,
        "now": NOW,
    }
    return issue(keys, **{**args, **kw})


def parts(p: str) -> tuple[bytes, bytes, dict[str, Any]]:
    signed, signature = cbor2.loads(b45decode(p[4:]))
    return signed, signature, cbor2.loads(signed)


def refused(p: str, keys: PublicKeys = KEYS.public, now: datetime = NOW) -> Refusal | None:
    v = verify(p, keys, now)
    assert v.valid is (v.reason is None)
    assert v.valid or v.detail
    return v.reason


# ------------------------------------------------------------------------------ round trip


def test_a_certificate_round_trips_with_its_doses_in_order() -> None:
    p = payload()
    v = verify(p, KEYS.public, NOW + timedelta(days=200))
    assert v.valid and v.claims is not None
    c = v.claims
    assert (c.version, c.kid, c.subject, c.birth_year) == (1, "2021-10", SUBJECT, 1980)
    assert c.issued_at == NOW and c.expires_at == NOW + timedelta(days=365)
    assert c.doses == (
        CertificateDose("AZ", date(2021, 7, 1), 1),
        CertificateDose("AZ", date(2021, 8, 30), 2),
        CertificateDose("PFIZER", date(2021, 10, 1), 3),
    )
    assert c.fully_vaccinated and c.doses_to_complete == 2
    shown = c.as_dict()
    assert shown["doses"][2] == {
        "number": 3,
        "vaccine": "PFIZER",
        "vaccine_name": "Pfizer-BioNTech (BNT162b2, Comirnaty)",
        "date": "2021-10-01",
    }
    assert shown["issued_at"] == "2021-10-01T03:00:00Z"


def test_a_certificate_of_three_doses_fits_a_small_qr_code_in_alphanumeric_mode() -> None:
    p = payload()
    assert p.startswith("CT1:") and len(p) <= 300, len(p)
    qr = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M)
    qr.add_data(p)
    qr.make(fit=True)
    assert qr.version <= 10
    assert [d.mode for d in qr.data_list] == [qrcode.util.MODE_ALPHA_NUM]


def test_completion_follows_the_first_product() -> None:
    one = certificate_doses([("j", NOW - timedelta(days=30), "JANSSEN")])
    half = certificate_doses([("a", NOW - timedelta(days=30), "AZ")])
    for doses, complete, needed in ((one, True, 1), (half, False, 2)):
        v = verify(payload(doses=doses), KEYS.public, NOW)
        assert v.claims is not None
        assert (v.claims.fully_vaccinated, v.claims.doses_to_complete) == (complete, needed)


def test_the_pseudonym_is_stable_keyed_and_names_nobody() -> None:
    assert pseudonym("s", "p1") == pseudonym("s", "p1")
    assert pseudonym("s", "p1") != pseudonym("s", "p2")
    assert pseudonym("s", "p1") != pseudonym("t", "p1")
    assert len(SUBJECT) == 16 and "person" not in SUBJECT


# ------------------------------------------------------------------------------ refusals


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("sub", pseudonym("deployment-secret", "person-2")),
        ("by", 1960),
        ("iat", int(NOW.timestamp()) - 86400),
        ("exp", int(NOW.timestamp()) + 10 * 365 * 86400),
        ("d", [["AZ", "2021-07-01", 1], ["AZ", "2021-08-30", 2]]),
        ("d", [["PFIZER", "2021-07-01", 1], ["AZ", "2021-08-30", 2], ["PFIZER", "2021-10-01", 3]]),
        ("d", [["AZ", "2021-06-01", 1], ["AZ", "2021-08-30", 2], ["PFIZER", "2021-10-01", 3]]),
        ("kid", "2021-04"),  # another key of the set: its signature does not match
    ],
)
def test_a_tampered_field_breaks_the_signature(field: str, value: Any) -> None:
    signed, signature, claims = parts(payload())
    tampered = cbor2.dumps({**claims, field: value}, canonical=True)
    assert tampered != signed
    assert refused(envelope(tampered, signature)) is Refusal.BAD_SIGNATURE


def test_a_tampered_signature_or_character_is_refused() -> None:
    p = payload()
    signed, signature, _ = parts(p)
    flipped = bytes([signature[0] ^ 1]) + signature[1:]
    assert refused(envelope(signed, flipped)) is Refusal.BAD_SIGNATURE
    # one character of the text changed, anywhere: refused (never valid), whatever the reason
    for i in range(4, len(p)):
        changed = p[:i] + ("0" if p[i] != "0" else "1") + p[i + 1 :]
        assert refused(changed) is not None, i


def test_another_key_under_the_same_id_is_a_bad_signature() -> None:
    assert refused(payload(OTHER)) is Refusal.BAD_SIGNATURE


def test_an_unknown_key_id_is_refused_as_such() -> None:
    stranger = CertificateKeys.parse(f"elsewhere:{seed('c')}")
    assert refused(payload(stranger)) is Refusal.UNKNOWN_KEY


def test_rotation_the_new_key_signs_and_the_old_one_still_verifies() -> None:
    old = CertificateKeys.parse(f"2021-04:{seed('b')}")
    rotated = KEYS  # the new key first, the old one kept for its certificates
    before = payload(old)
    after = payload(rotated)
    assert parts(after)[2]["kid"] == "2021-10"
    assert refused(before, rotated.public) is None and refused(after, rotated.public) is None
    retired = CertificateKeys.parse(f"2021-10:{seed('a')}")  # the old key dropped
    assert refused(before, retired.public) is Refusal.UNKNOWN_KEY


def test_expiry_and_not_yet_valid() -> None:
    p = payload(validity=timedelta(days=30))
    assert refused(p, now=NOW + timedelta(days=30) - timedelta(seconds=1)) is None
    assert refused(p, now=NOW + timedelta(days=30)) is Refusal.EXPIRED
    assert refused(p, now=NOW - timedelta(seconds=60)) is None  # clock leeway
    assert refused(p, now=NOW - timedelta(minutes=5)) is Refusal.NOT_YET_VALID


def test_versions_other_than_1_are_refused_as_unknown() -> None:
    p = payload()
    assert refused("CT2:" + p[4:]) is Refusal.UNKNOWN_VERSION
    claims = parts(p)[2]
    v2 = cert.encode(KEYS, {**claims, "v": 2})
    assert refused(v2) is Refusal.UNKNOWN_VERSION


def signed_claims(**changes: Any) -> str:
    """An authentic payload with claims :func:`issue` would refuse (None drops a claim)."""
    _, _, claims = parts(payload())
    merged = {k: v for k, v in {**claims, **changes}.items() if v is not None}
    return cert.encode(KEYS, merged, kid="2021-10")


@pytest.mark.parametrize(
    "text",
    [
        "",
        "CT1:",
        "HC1:NCFOXN%TS3DH3ZSUZK+.V0ETD%65NL-AH",
        "ct1:" + "A" * 30,
        "CT1:" + "a" * 30,  # lower case is not base45
        "CT1:" + "A" * 31,  # 3k+1 characters
        "CT1:GGW",  # a group over 65535
        "CT1:" + b45encode(b"\x00\x01"),  # CBOR, not an envelope
        "CT1:" + b45encode(cbor2.dumps([b"x", b"y" * 64]) + b"\x00"),  # trailing bytes
        "CT1:" + b45encode(cbor2.dumps([b"x", b"y" * 63])),  # short signature
        "CT1:" + b45encode(cbor2.dumps([b"\xff", b"y" * 64])),  # signed part not CBOR
        "CT1:" + b45encode(cbor2.dumps([cbor2.dumps([1]), b"y" * 64])),  # not a map
        "CT1:" + b45encode(cbor2.dumps([cbor2.dumps({"v": "1"}), b"y" * 64])),
        "CT1:" + b45encode(cbor2.dumps([cbor2.dumps({"v": 1}), b"y" * 64])),  # no kid
        "CT1:" + b45encode(b"\x9b" + b"\x7f" * 8),  # an array of 2^63 items
        "CT1:" + b45encode(b"\x81" * 600),  # nested deeply
        "CT1:" + "A" * 2000,  # too long to look at
        signed_claims(d=[]),
        signed_claims(d=[["AZ", "2021-07-01", 2]]),  # numbered out of order
        signed_claims(d=[["AZ", "01/07/2021", 1]]),
        signed_claims(d=[["AZ", "2021-02-30", 1]]),
        signed_claims(d=[["az", "2021-07-01", 1]]),
        signed_claims(d=[["AZ", "2021-07-01", True]]),
        signed_claims(sub=None),
        signed_claims(sub="Person-1"),
        signed_claims(by=1800),
        signed_claims(by=2030),  # born after the certificate was issued
        signed_claims(iat=None),
        signed_claims(exp=int(NOW.timestamp()) - 1),  # expires before it is issued
        signed_claims(extra="x"),
    ],
)
def test_malformed_payloads_are_refused_as_malformed(text: str) -> None:
    assert refused(text) is Refusal.MALFORMED


@given(st.text(max_size=400))
def test_no_text_makes_verify_raise(text: str) -> None:
    v = verify(text, KEYS.public, NOW)
    assert not v.valid


@given(st.binary(max_size=400))
def test_no_bytes_behind_the_prefix_make_verify_raise(data: bytes) -> None:
    v = verify("CT1:" + b45encode(data), KEYS.public, NOW)
    assert not v.valid and v.reason is not None


@given(st.binary(max_size=300))
def test_base45_round_trips(data: bytes) -> None:
    assert b45decode(b45encode(data)) == data


def test_base45_matches_rfc_9285_examples() -> None:
    assert b45encode(b"AB") == "BB8"
    assert b45encode(b"Hello!!") == "%69 VD92EX0"
    assert b45encode(b"base-45") == "UJCLQE7W581"
    assert b45decode("QED8WEX0") == b"ietf!"


# ------------------------------------------------------------------------------ keys


def test_the_public_key_document_round_trips_and_verifies() -> None:
    doc = KEYS.public.document()
    assert [k["kid"] for k in doc["keys"]] == ["2021-10", "2021-04"]
    assert all(
        k["alg"] == "Ed25519" and len(base64.b64decode(k["public_key"])) == 32 for k in doc["keys"]
    )
    assert "private" not in str(doc)
    again = PublicKeys.from_document(doc)
    assert verify(payload(), again, NOW).valid


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ([], "a key document"),
        ({"keys": [{"kid": "a"}]}, "string kid, alg and public_key"),
        ({"keys": [{"kid": "a", "alg": "HS256", "public_key": "AA=="}]}, "alg must be Ed25519"),
        ({"keys": [{"kid": "a", "alg": "Ed25519", "public_key": "!!"}]}, "not base64"),
        ({"keys": [{"kid": "a", "alg": "Ed25519", "public_key": "AAAA"}]}, "32 bytes"),
        ({"keys": []}, "at least one key"),
    ],
)
def test_bad_key_documents_are_refused(doc: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PublicKeys.from_document(doc)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("no-seed", "must look like"),
        ("a:c2hvcnQ=", "32 bytes"),
        (f"a:{seed('a')},a:{seed('b')}", "twice"),
        (f"bad id:{seed('a')}", "key id"),
    ],
)
def test_bad_key_settings_are_refused_without_echoing_the_seed(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as e:
        CertificateKeys.parse(text)
    assert seed("a") not in str(e.value)


def test_issue_refuses_what_verify_would_refuse() -> None:
    with pytest.raises(ValueError, match="at least one dose"):
        payload(doses=())
    with pytest.raises(ValueError, match="birth year"):
        payload(birth_year=2030)
    with pytest.raises(ValueError, match="validity"):
        payload(validity=timedelta(0))
