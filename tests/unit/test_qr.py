"""QR payloads: format, signatures, and every way a scanned code is refused."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.qr import (
    SIGNATURE_LENGTH,
    ForgedQr,
    MalformedQr,
    QrKind,
    QrSigner,
    QrSubject,
    parse_qr,
    person_qr,
    venue_qr,
)

SECRET = "unit-test-secret-0123456789"
VENUE = "v_abcdefghijklmnopqrst"
PERSON = "p_abcdefghijklmnopqrst"


def test_payload_format() -> None:
    payload = venue_qr(SECRET, VENUE)
    prefix, version, kind, ident, sig = payload.split(":")
    assert (prefix, version, kind, ident) == ("covidtech", "v1", "venue", VENUE)
    assert len(sig) == SIGNATURE_LENGTH == 16
    assert set(sig) <= set("abcdefghijklmnopqrstuvwxyz234567")
    assert person_qr(SECRET, PERSON).startswith(f"covidtech:v1:person:{PERSON}:")


def test_round_trip() -> None:
    assert parse_qr(SECRET, venue_qr(SECRET, VENUE)) == QrSubject(QrKind.VENUE, VENUE)
    assert parse_qr(SECRET, person_qr(SECRET, PERSON)) == QrSubject(QrKind.PERSON, PERSON)


def test_deterministic_per_secret() -> None:
    assert venue_qr(SECRET, VENUE) == venue_qr(SECRET, VENUE)
    assert venue_qr(SECRET, VENUE) != venue_qr("another-secret-987654321", VENUE)


def test_kind_is_bound_into_the_signature() -> None:
    # The same id as a person: the venue's signature must not validate it.
    sig = venue_qr(SECRET, VENUE).rsplit(":", 1)[1]
    with pytest.raises(ForgedQr):
        parse_qr(SECRET, f"covidtech:v1:person:{VENUE}:{sig}")


def test_other_secret_is_forged() -> None:
    with pytest.raises(ForgedQr):
        parse_qr(SECRET, venue_qr("another-secret-987654321", VENUE))


def test_changed_id_or_signature_is_forged() -> None:
    payload = venue_qr(SECRET, VENUE)
    head, sig = payload.rsplit(":", 1)
    flipped = ("b" if sig[0] == "a" else "a") + sig[1:]
    with pytest.raises(ForgedQr):
        parse_qr(SECRET, f"{head}:{flipped}")
    with pytest.raises(ForgedQr):
        parse_qr(SECRET, payload.replace(VENUE, "v_abcdefghijklmnopqrsu"))


@pytest.mark.parametrize(
    "payload",
    [
        "",
        "hello",
        "https://example.org/checkin?v=1",
        f"covidtech:v2:venue:{VENUE}:abcdefghijklmnop",
        f"covidtech:v1:shop:{VENUE}:abcdefghijklmnop",
        f"covidtech:v1:venue:{VENUE}:ABCDEFGHIJKLMNOP",
        f"covidtech:v1:venue:{VENUE}:abcdefghijklmno",
        f"covidtech:v1:venue:{VENUE}:abcdefghijklmnop:x",
        "covidtech:v1:venue::abcdefghijklmnop",
        "covidtech:v1:venue:a b:abcdefghijklmnop",
        "covidtech:v1:venue:" + "x" * 300,
    ],
)
def test_malformed(payload: str) -> None:
    with pytest.raises(MalformedQr):
        parse_qr(SECRET, payload)


def test_ids_we_never_issue_are_refused_when_signing() -> None:
    with pytest.raises(ValueError):
        venue_qr(SECRET, "has:colon")
    with pytest.raises(ValueError):
        QrSigner(SECRET).payload(QrKind.PERSON, "")
    with pytest.raises(ValueError):
        QrSigner("")


@given(st.text(max_size=120))
def test_arbitrary_text_never_parses_as_valid(text: str) -> None:
    with pytest.raises((MalformedQr, ForgedQr)):
        parse_qr(SECRET, text)


@given(st.from_regex(r"[A-Za-z0-9_-]{1,64}", fullmatch=True))
def test_any_valid_id_round_trips(ident: str) -> None:
    signer = QrSigner(SECRET)
    assert signer.parse(signer.payload(QrKind.VENUE, ident)) == QrSubject(QrKind.VENUE, ident)
