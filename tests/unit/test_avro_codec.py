"""The single-object codec: round trips, typed errors, the faust codec."""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.codec import (
    HEADER_SIZE,
    MAGIC,
    CodecError,
    Event,
    InvalidRecord,
    MalformedEvent,
    Registry,
    UnknownSchema,
    decode,
    default_registry,
    encode,
)

UTC = dt.UTC
ICT = dt.timezone(dt.timedelta(hours=7), "Asia/Ho_Chi_Minh")
CHECKIN = "covidtech.checkin.CheckInScanned"


def _sha(code: str) -> str:
    return hashlib.sha256(code.encode()).hexdigest()


SAMPLES: dict[str, dict[str, Any]] = {
    "covidtech.checkin.VenueRegistered": {
        "event_id": "venue-registered:v-0042",
        "occurred_at": dt.datetime(2021, 7, 20, 2, 0, tzinfo=UTC),
        "venue_id": "v-0042",
        "name": "Chợ Bến Thành",
        "address": "Lê Lợi, Phường Bến Thành, Quận 1",
        "province": "79",
        "district": "760",
        "category": "market",
        "default_dwell_minutes": 90,
    },
    "covidtech.checkin.VenueUpdated": {
        "event_id": "venue-updated:v-0042:2",
        "occurred_at": dt.datetime(2021, 7, 22, 3, 30, tzinfo=UTC),
        "venue_id": "v-0042",
        "name": "Chợ Bến Thành (cửa Nam)",
        "address": "Lê Lợi, Phường Bến Thành, Quận 1",
        "province": "79",
        "district": "760",
        "category": "market",
        "default_dwell_minutes": 120,
    },
    "covidtech.people.PersonRegistered": {
        "event_id": "person:p-2b9c",
        "occurred_at": dt.datetime(2021, 7, 1, 8, 12, 5, 123_000, tzinfo=UTC),
        "person_id": "p-2b9c",
        "province": "01",
        "district": "001",
        "birth_year": None,
    },
    CHECKIN: {
        "event_id": "scan-7f3a",
        "scanned_at": dt.datetime(2021, 8, 2, 8, 15, 30, 250_000, tzinfo=ICT),
        "received_at": dt.datetime(2021, 8, 2, 1, 15, 31, tzinfo=UTC),
        "person_id": "p-2b9c",
        "venue_id": "v-0042",
        "direction": "OUT",
        "method": "STAFF_SCANNED_PERSON",
        "venue_province": "79",
        "venue_dwell_minutes": 60,
        "device_id": "scanner-17",
    },
    "covidtech.checkin.HealthDeclarationSubmitted": {
        "event_id": "decl-91",
        "submitted_at": dt.datetime(2021, 8, 2, 0, 5, tzinfo=UTC),
        "person_id": "p-2b9c",
        "province": "79",
        "symptoms": ["FEVER", "LOSS_OF_TASTE_OR_SMELL"],
        "contact_with_case": True,
        "travelled_from_province": "74",
    },
    "covidtech.testing.SampleCollected": {
        "event_id": "sample-collected:smp-55",
        "sample_id": "smp-55",
        "collected_at": dt.datetime(2021, 8, 3, 2, 40, tzinfo=UTC),
        "site_id": "site-q1-03",
        "province": "79",
        "lab_id": "pasteur-hcm",
        "test_type": "PCR",
        "members": [
            {
                "person_id": "p-2b9c",
                "lookup_code_sha256": _sha("K7Q2-MX9P"),
                "symptom_onset": dt.date(2021, 8, 1),
            },
            {
                "person_id": "p-77aa",
                "lookup_code_sha256": _sha("Z3RT-WW4N"),
                "symptom_onset": None,
            },
        ],
    },
    "covidtech.testing.SampleResulted": {
        "event_id": "sample-resulted:smp-55",
        "sample_id": "smp-55",
        "resulted_at": dt.datetime(2021, 8, 3, 14, 0, tzinfo=UTC),
        "lab_id": "lab-hcdc",
        "result": "POSITIVE",
    },
    "covidtech.vaccination.DoseAdministered": {
        "event_id": "dose-1c2d",
        "dose_id": "dose-1c2d",
        "person_id": "p-2b9c",
        "administered_at": dt.datetime(2021, 9, 10, 1, 0, tzinfo=UTC),
        "site_id": "vx-site-12",
        "vaccine": "AZ",
        "birth_year": 1958,
        "residence_province": "79",
    },
    "covidtech.testing.CaseConfirmed": {
        "event_id": "case:p-2b9c:smp-55",
        "person_id": "p-2b9c",
        "sample_id": "smp-55",
        "province": "79",
        "collected_at": dt.datetime(2021, 8, 3, 2, 40, tzinfo=UTC),
        "symptom_onset": dt.date(2021, 8, 1),
        "infectious_from": dt.datetime(2021, 7, 29, 17, 0, tzinfo=UTC),
        "infectious_until": dt.datetime(2021, 8, 11, 17, 0, tzinfo=UTC),
        "resulted_at": dt.datetime(2021, 8, 3, 9, 15, tzinfo=UTC),
    },
    "covidtech.exposure.VisitChanged": {
        "event_id": "visit:p-2b9c:v-0042:1627866930250",
        "venue_id": "v-0042",
        "venue_province": "79",
        "person_id": "p-2b9c",
        "visit_start": dt.datetime(2021, 8, 2, 1, 15, 30, 250_000, tzinfo=UTC),
        "visit_end": dt.datetime(2021, 8, 2, 2, 15, 30, 250_000, tzinfo=UTC),
        "removed": False,
    },
    "covidtech.exposure.ExposureWindowChanged": {
        "event_id": "window:p-2b9c:v-0042:1627866930250",
        "venue_id": "v-0042",
        "venue_province": "79",
        "case_person_id": "p-2b9c",
        "visit_start": dt.datetime(2021, 8, 2, 1, 15, 30, 250_000, tzinfo=UTC),
        "window_start": dt.datetime(2021, 8, 2, 1, 15, 30, 250_000, tzinfo=UTC),
        "window_end": dt.datetime(2021, 8, 2, 2, 45, 30, 250_000, tzinfo=UTC),
        "removed": True,
    },
    "covidtech.exposure.ExposureAlertRaised": {
        "event_id": "alert:4e1f:3",
        "alert_id": "alert:4e1f",
        "case_person_id": "p-2b9c",
        "contact_person_id": "p-77aa",
        "venue_id": "v-0042",
        "province": "79",
        "contact_visit_start": dt.datetime(2021, 8, 2, 1, 30, tzinfo=UTC),
        "contact_visit_end": dt.datetime(2021, 8, 2, 1, 40, tzinfo=UTC),
        "overlap_seconds": 600,
        "risk": "LOW",
        "status": "ACTIVE",
        "version": 3,
    },
    "covidtech.exposure.TransmissionClaimChanged": {
        "event_id": "claim-4e1f",
        "alert_id": "alert:4e1f",
        "source_person_id": "p-2b9c",
        "case_person_id": "p-77aa",
        "case_sample_id": "s-0099",
        "case_collected_at": dt.datetime(2021, 8, 6, 2, 0, tzinfo=UTC),
        "venue_id": "v-0042",
        "province": "79",
        "exposure_at": dt.datetime(2021, 8, 2, 1, 30, tzinfo=UTC),
        "removed": False,
        "version": 1,
    },
    "covidtech.exposure.ClusterDetected": {
        "event_id": "cluster:v-0042:1627866930250",
        "venue_id": "v-0042",
        "province": "79",
        "case_person_ids": ["p-2b9c", "p-4d01", "p-9e8f"],
        "first_window_start": dt.datetime(2021, 8, 2, 1, 15, 30, 250_000, tzinfo=UTC),
        "last_window_start": dt.datetime(2021, 8, 6, 11, 0, tzinfo=UTC),
    },
    "covidtech.vaccination.PersonCoverageStatus": {
        "event_id": "coverage:p-2b9c:dose-9f00",
        "person_id": "p-2b9c",
        "province": "79",
        "age_band": "50-64",
        "dose_dates": [dt.date(2021, 9, 10), dt.date(2021, 11, 5), dt.date(2022, 3, 1)],
        "first_dose_date": dt.date(2021, 9, 10),
        "completed_date": dt.date(2021, 11, 5),
        "booster_dates": [dt.date(2022, 3, 1)],
    },
    "covidtech.vaccination.VaccinationRegistered": {
        "event_id": "reg-7c1e",
        "registration_id": "reg-7c1e",
        "person_id": "p-2b9c",
        "province": "79",
        "district": "760",
        "priority_group": "ESSENTIAL_SERVICE",
        "registered_at": dt.datetime(2021, 7, 15, 2, 0, tzinfo=UTC),
        "institution_id": "inst-ben-thanh-market",
        "birth_year": 1968,
    },
    "covidtech.vaccination.AppointmentScheduled": {
        "event_id": "appt-0091",
        "appointment_id": "appt-0091",
        "person_id": "p-2b9c",
        "site_id": "site-q1-03",
        "appointment_at": dt.datetime(2021, 7, 20, 1, 30, tzinfo=UTC),
        "scheduled_at": dt.datetime(2021, 7, 16, 8, 0, tzinfo=UTC),
    },
    "covidtech.vaccination.AppointmentCancelled": {
        "event_id": "cancel:appt-0091",
        "appointment_id": "appt-0091",
        "person_id": "p-2b9c",
        "site_id": "site-q1-03",
        "cancelled_at": dt.datetime(2021, 7, 18, 3, 0, tzinfo=UTC),
        "reason": "site closed for disinfection",
    },
    "covidtech.vaccination.VaccineAllocated": {
        "event_id": "alloc-2021-07-79-az",
        "allocation_id": "alloc-2021-07-79-az",
        "province": "79",
        "vaccine": "AZ",
        "doses": 930_000,
        "allocated_at": dt.datetime(2021, 7, 10, 4, 0, tzinfo=UTC),
    },
    "covidtech.access.GrantIssued": {
        "event_id": "g-hcdc-1:issued",
        "grant_id": "g-hcdc-1",
        "token_id": "tok-7f3a",
        "agency": "HCDC",
        "scopes": ["province:79", "tracer:79"],
        "purpose": "Delta outbreak response",
        "granted_by": "moh-duty-officer",
        "granted_by_grant_id": None,
        "granted_by_token_id": "boot-9c1e",
        "granted_at": dt.datetime(2021, 7, 10, 2, 0, tzinfo=UTC),
        "expires_at": dt.datetime(2021, 12, 31, 17, 0, tzinfo=UTC),
    },
    "covidtech.access.GrantRevoked": {
        "event_id": "g-hcdc-1:revoked",
        "grant_id": "g-hcdc-1",
        "token_id": "tok-7f3a",
        "revoked_by": "moh-duty-officer",
        "revoked_at": dt.datetime(2021, 9, 1, 2, 0, tzinfo=UTC),
        "reason": "rotated",
    },
    "covidtech.access.PersonalDataRead": {
        "event_id": "read-0001",
        "read_at": dt.datetime(2021, 8, 2, 3, 0, tzinfo=UTC),
        "actor": "HCDC tracer 12",
        "grant_id": "g-hcdc-1",
        "token_id": "tok-7f3a",
        "scopes": ["tracer:79"],
        "method": "GET",
        "route": "/v1/people/{person_id}/visits",
        "subject": "person:p_2b9c",
        "person_ids": ["p_2b9c"],
        "client_address": "10.0.0.7",
        "status": 200,
    },
    "covidtech.vaccination.DosesDiscarded": {
        "event_id": "discard-q1-03-0717",
        "discard_id": "discard-q1-03-0717",
        "province": "79",
        "site_id": "site-q1-03",
        "vaccine": "PFIZER",
        "doses": 6,
        "reason": "OPENED_VIAL_UNUSED",
        "discarded_at": dt.datetime(2021, 7, 17, 11, 0, tzinfo=UTC),
    },
    "covidtech.vaccination.VaccinationPlanSet": {
        "event_id": "plan-79-2021-07",
        "plan_id": "plan-79-2021-07",
        "province": "79",
        "target_date": dt.date(2021, 8, 31),
        "targets": [
            {
                "priority_group": "HEALTH_WORKER",
                "people_vaccinated": 60_000,
                "people_fully_vaccinated": 60_000,
            },
            {
                "priority_group": "AGE_65_PLUS",
                "people_vaccinated": 700_000,
                "people_fully_vaccinated": 350_000,
            },
        ],
        "set_at": dt.datetime(2021, 7, 12, 2, 0, tzinfo=UTC),
    },
    "covidtech.vaccination.PersonRegistrationStatus": {
        "event_id": "regstatus-5d2a",
        "person_id": "p-2b9c",
        "registration_id": "reg-7c1e",
        "province": "79",
        "district": "760",
        "priority_group": "ESSENTIAL_SERVICE",
        "registered_at": dt.datetime(2021, 7, 15, 2, 0, tzinfo=UTC),
        "institution_id": "inst-ben-thanh-market",
        "appointment_id": "appt-0091",
        "appointment_at": dt.datetime(2021, 7, 20, 1, 30, tzinfo=UTC),
        "appointment_site_id": "site-q1-03",
        "doses": 1,
        "first_dose_date": dt.date(2021, 7, 20),
        "completed_date": None,
    },
    "covidtech.vaccination.StockDrawn": {
        "event_id": "drawn-9f00",
        "dose_id": "dose-9f00",
        "province": "79",
        "vaccine": "AZ",
        "administered_at": dt.datetime(2021, 7, 20, 1, 45, tzinfo=UTC),
    },
    "covidtech.ops.DeadLetter": {
        "source_topic": "checkins",
        "source_partition": 3,
        "source_offset": 2**40 + 17,
        "key": b"p-2b9c",
        "value": b"\xc3\x01\x00garbage",
        "error": "MalformedEvent: bad magic",
    },
}


def test_there_is_a_sample_for_every_registered_event() -> None:
    assert set(SAMPLES) == set(default_registry().names)


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_round_trip(name: str) -> None:
    registry = default_registry()
    record = SAMPLES[name]
    data = registry.encode(name, record)

    assert data[:2] == MAGIC
    assert data[2:HEADER_SIZE] == registry.schema(name).fingerprint
    event = registry.decode(data)
    assert event == Event(name, record)
    assert registry.decode(data, reader=name) == event
    for value in event.record.values():
        if isinstance(value, dt.datetime):
            assert value.tzinfo is not None
            assert value.utcoffset() == dt.timedelta(0)


def test_module_level_functions_use_the_default_registry() -> None:
    data = encode(CHECKIN, SAMPLES[CHECKIN])
    assert data == default_registry().encode(CHECKIN, SAMPLES[CHECKIN])
    assert decode(data) == Event(CHECKIN, SAMPLES[CHECKIN])
    assert default_registry() is default_registry()


def test_encoding_is_deterministic() -> None:
    registry = Registry()
    assert registry.encode(CHECKIN, SAMPLES[CHECKIN]) == default_registry().encode(
        CHECKIN, dict(reversed(list(SAMPLES[CHECKIN].items())))
    )


def test_fields_with_defaults_may_be_omitted_and_ints_are_accepted_for_times() -> None:
    record = dict(SAMPLES[CHECKIN])
    del record["device_id"]
    del record["venue_dwell_minutes"]
    record["received_at"] = 1627866931000
    event = decode(encode(CHECKIN, record))
    assert event.record["device_id"] is None
    assert event.record["venue_dwell_minutes"] == 60
    assert event.record["received_at"] == dt.datetime(2021, 8, 2, 1, 15, 31, tzinfo=UTC)


_ids = st.text(min_size=1, max_size=40)
_times = st.datetimes(
    min_value=dt.datetime(1970, 1, 1),
    max_value=dt.datetime(2100, 1, 1),
    timezones=st.sampled_from([UTC, ICT]),
).map(lambda t: t.replace(microsecond=t.microsecond // 1000 * 1000))


@given(
    event_id=_ids,
    scanned_at=_times,
    received_at=_times,
    person_id=_ids,
    venue_id=_ids,
    direction=st.sampled_from(["IN", "OUT"]),
    method=st.sampled_from(["PERSON_SCANNED_VENUE", "STAFF_SCANNED_PERSON"]),
    venue_province=st.text(alphabet="0123456789", min_size=2, max_size=2),
    venue_dwell_minutes=st.integers(1, 720),
    device_id=st.none() | _ids,
)
def test_any_valid_checkin_round_trips(**record: Any) -> None:
    assert decode(encode(CHECKIN, record)) == Event(CHECKIN, record)


# --- errors -----------------------------------------------------------------------------------


def test_unknown_fingerprint() -> None:
    data = encode(CHECKIN, SAMPLES[CHECKIN])
    forged = MAGIC + bytes(8) + data[HEADER_SIZE:]
    with pytest.raises(UnknownSchema, match="0000000000000000"):
        decode(forged)


def test_fingerprint_unknown_to_an_empty_registry() -> None:
    with pytest.raises(UnknownSchema):
        Registry(None).decode(encode(CHECKIN, SAMPLES[CHECKIN]))


def test_unknown_name() -> None:
    with pytest.raises(UnknownSchema, match="CheckInScaned"):
        encode("covidtech.checkin.CheckInScaned", SAMPLES[CHECKIN])
    with pytest.raises(UnknownSchema):
        decode(encode(CHECKIN, SAMPLES[CHECKIN]), reader="covidtech.checkin.Nope")


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xc3",
        b"\xc3\x01\x01\x02",
        b"\x00\x01" + bytes(20),
        b'{"event_id": "x"}',
        b"\xc3\x02" + bytes(20),
    ],
    ids=["empty", "magic-only", "short-header", "bad-magic", "json", "wrong-version"],
)
def test_malformed_envelopes(data: bytes) -> None:
    with pytest.raises(MalformedEvent):
        decode(data)


def test_truncated_body() -> None:
    data = encode(CHECKIN, SAMPLES[CHECKIN])
    for cut in range(HEADER_SIZE, len(data)):
        with pytest.raises(MalformedEvent):
            decode(data[:cut])


def test_trailing_bytes() -> None:
    with pytest.raises(MalformedEvent, match="trailing"):
        decode(encode(CHECKIN, SAMPLES[CHECKIN]) + b"\x00")


def test_garbage_body_with_a_valid_header() -> None:
    header = default_registry().schema(CHECKIN).header
    with pytest.raises(MalformedEvent):
        decode(header + b"\xff" * 40)


@given(name=st.sampled_from(sorted(SAMPLES)), body=st.binary(max_size=200))
def test_any_body_decodes_or_raises_malformed(name: str, body: bytes) -> None:
    header = default_registry().schema(name).header
    try:
        event = decode(header + body)
    except MalformedEvent:
        return
    assert event.name == name


@given(prefix=st.sampled_from([b"", MAGIC]), rest=st.binary(max_size=64))
def test_any_bytes_raise_only_codec_errors(prefix: bytes, rest: bytes) -> None:
    with contextlib.suppress(CodecError):
        decode(prefix + rest)


@pytest.mark.parametrize(
    ("name", "field", "value"),
    [
        (CHECKIN, "direction", "SIDEWAYS"),
        (CHECKIN, "venue_dwell_minutes", "60"),
        (CHECKIN, "venue_dwell_minutes", 60.5),
        (CHECKIN, "venue_dwell_minutes", 2**31),
        (CHECKIN, "person_id", None),
        (CHECKIN, "person_id", 42),
        (CHECKIN, "device_id", 42),
        (CHECKIN, "scanned_at", "2021-08-02T01:15:30Z"),
        ("covidtech.checkin.HealthDeclarationSubmitted", "symptoms", ["FEVER", "HICCUPS"]),
        ("covidtech.checkin.HealthDeclarationSubmitted", "contact_with_case", "yes"),
        ("covidtech.ops.DeadLetter", "value", "not bytes"),
    ],
)
def test_invalid_record_names_the_field(name: str, field: str, value: Any) -> None:
    record = {**SAMPLES[name], field: value}
    with pytest.raises(InvalidRecord) as excinfo:
        encode(name, record)
    assert excinfo.value.field == field
    assert excinfo.value.event_name == name
    assert field in str(excinfo.value)


def test_missing_required_field() -> None:
    record = dict(SAMPLES[CHECKIN])
    del record["venue_id"]
    with pytest.raises(InvalidRecord) as excinfo:
        encode(CHECKIN, record)
    assert excinfo.value.field == "venue_id"


def test_nested_field_is_named() -> None:
    name = "covidtech.testing.SampleCollected"
    record = {**SAMPLES[name], "members": [{"person_id": "p-1", "lookup_code_sha256": 7}]}
    with pytest.raises(InvalidRecord) as excinfo:
        encode(name, record)
    assert excinfo.value.field == "lookup_code_sha256"
    assert "SampleMember.lookup_code_sha256" in str(excinfo.value)


def test_naive_datetime_is_refused() -> None:
    record = {**SAMPLES[CHECKIN], "received_at": dt.datetime(2021, 8, 2, 8, 15)}
    with pytest.raises(InvalidRecord, match="naive") as excinfo:
        encode(CHECKIN, record)
    assert excinfo.value.field == "received_at"


def test_not_a_mapping() -> None:
    with pytest.raises(InvalidRecord):
        encode(CHECKIN, ["not", "a", "record"])  # type: ignore[arg-type]


def test_writer_errors_are_wrapped_without_validation() -> None:
    registry = Registry(validate=False)
    with pytest.raises(InvalidRecord) as excinfo:
        registry.encode(CHECKIN, {**SAMPLES[CHECKIN], "person_id": 42})
    assert excinfo.value.field == "person_id"
    assert isinstance(excinfo.value.__cause__, TypeError)


def test_registering_a_non_record_is_refused() -> None:
    with pytest.raises(CodecError):
        Registry(None).register({"type": "enum", "name": "E", "symbols": ["A"]})
    with pytest.raises(CodecError):
        Registry(None).register({"type": "record", "name": "R", "fields": [{"name": "x"}]})


# --- faust ------------------------------------------------------------------------------------


def test_faust_codec_round_trips() -> None:
    from faust.serializers import codecs

    from streams.avro_codec import CODEC_NAME, AvroSingleObject, register

    codec = register()
    assert isinstance(codec, AvroSingleObject)
    assert codecs.get_codec(CODEC_NAME) is codec

    event = Event(CHECKIN, SAMPLES[CHECKIN])
    data = codecs.dumps(CODEC_NAME, event)
    assert data == encode(CHECKIN, SAMPLES[CHECKIN])
    assert codecs.loads(CODEC_NAME, data) == event

    with pytest.raises(MalformedEvent):
        codecs.loads(CODEC_NAME, b"garbage")
    with pytest.raises(TypeError):
        codecs.dumps(CODEC_NAME, SAMPLES[CHECKIN])


def test_faust_codec_keeps_its_settings_when_chained() -> None:
    from faust.serializers import codecs

    from streams.avro_codec import AvroSingleObject

    registry = Registry()
    codec = AvroSingleObject(registry=registry) | codecs.binary()
    event = Event(CHECKIN, SAMPLES[CHECKIN])
    assert codec.loads(codec.dumps(event)) == event
    assert codec.nodes[0].registry is registry
