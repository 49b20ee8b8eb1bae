"""The Avro contracts: field lists as in docs/events.md, conventions, fingerprints, evolution."""

from __future__ import annotations

import copy
import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from fastavro.schema import fingerprint as fastavro_fingerprint
from fastavro.schema import to_parsing_canonical_form

from schemas.codec import (
    HEADER_SIZE,
    MAGIC,
    SCHEMA_DIR,
    Event,
    IncompatibleSchema,
    Registry,
    canonical_fingerprint,
)

UTC = dt.UTC
CHECKIN = "covidtech.checkin.CheckInScanned"

# docs/events.md, field for field, in order.
VENUE_FIELDS = [
    "event_id",
    "occurred_at",
    "venue_id",
    "name",
    "address",
    "province",
    "district",
    "category",
    "default_dwell_minutes",
]
EXPECTED_FIELDS: dict[str, list[str]] = {
    "covidtech.checkin.VenueRegistered": VENUE_FIELDS,
    "covidtech.checkin.VenueUpdated": VENUE_FIELDS,
    "covidtech.people.PersonRegistered": [
        "event_id",
        "occurred_at",
        "person_id",
        "province",
        "district",
        "birth_year",
    ],
    CHECKIN: [
        "event_id",
        "scanned_at",
        "received_at",
        "person_id",
        "venue_id",
        "direction",
        "method",
        "venue_province",
        "venue_dwell_minutes",
        "device_id",
    ],
    "covidtech.checkin.HealthDeclarationSubmitted": [
        "event_id",
        "submitted_at",
        "person_id",
        "province",
        "symptoms",
        "contact_with_case",
        "travelled_from_province",
    ],
    "covidtech.testing.SampleCollected": [
        "event_id",
        "sample_id",
        "collected_at",
        "site_id",
        "province",
        "lab_id",
        "test_type",
        "members",
    ],
    "covidtech.testing.SampleResulted": [
        "event_id",
        "sample_id",
        "resulted_at",
        "lab_id",
        "result",
    ],
    "covidtech.vaccination.DoseAdministered": [
        "event_id",
        "dose_id",
        "person_id",
        "administered_at",
        "site_id",
        "vaccine",
        "birth_year",
        "residence_province",
    ],
    "covidtech.testing.CaseConfirmed": [
        "event_id",
        "person_id",
        "sample_id",
        "province",
        "collected_at",
        "symptom_onset",
        "infectious_from",
        "infectious_until",
        "resulted_at",
    ],
    "covidtech.exposure.VisitChanged": [
        "event_id",
        "venue_id",
        "venue_province",
        "person_id",
        "visit_start",
        "visit_end",
        "removed",
    ],
    "covidtech.exposure.ExposureWindowChanged": [
        "event_id",
        "venue_id",
        "venue_province",
        "case_person_id",
        "visit_start",
        "window_start",
        "window_end",
        "removed",
    ],
    "covidtech.exposure.ExposureAlertRaised": [
        "event_id",
        "alert_id",
        "case_person_id",
        "contact_person_id",
        "venue_id",
        "province",
        "contact_visit_start",
        "contact_visit_end",
        "overlap_seconds",
        "risk",
        "status",
        "version",
    ],
    "covidtech.exposure.TransmissionClaimChanged": [
        "event_id",
        "alert_id",
        "source_person_id",
        "case_person_id",
        "case_sample_id",
        "case_collected_at",
        "venue_id",
        "province",
        "exposure_at",
        "removed",
        "version",
    ],
    "covidtech.exposure.ClusterDetected": [
        "event_id",
        "venue_id",
        "province",
        "case_person_ids",
        "first_window_start",
        "last_window_start",
    ],
    "covidtech.vaccination.PersonCoverageStatus": [
        "event_id",
        "person_id",
        "province",
        "age_band",
        "dose_dates",
        "first_dose_date",
        "completed_date",
        "booster_dates",
    ],
    "covidtech.vaccination.VaccinationRegistered": [
        "event_id",
        "registration_id",
        "person_id",
        "province",
        "district",
        "priority_group",
        "registered_at",
        "institution_id",
        "birth_year",
    ],
    "covidtech.vaccination.AppointmentScheduled": [
        "event_id",
        "appointment_id",
        "person_id",
        "site_id",
        "appointment_at",
        "scheduled_at",
    ],
    "covidtech.vaccination.AppointmentCancelled": [
        "event_id",
        "appointment_id",
        "person_id",
        "site_id",
        "cancelled_at",
        "reason",
    ],
    "covidtech.vaccination.VaccineAllocated": [
        "event_id",
        "allocation_id",
        "province",
        "vaccine",
        "doses",
        "allocated_at",
    ],
    "covidtech.vaccination.DosesDiscarded": [
        "event_id",
        "discard_id",
        "province",
        "site_id",
        "vaccine",
        "doses",
        "reason",
        "discarded_at",
    ],
    "covidtech.vaccination.VaccinationPlanSet": [
        "event_id",
        "plan_id",
        "province",
        "target_date",
        "targets",
        "set_at",
    ],
    "covidtech.vaccination.PersonRegistrationStatus": [
        "event_id",
        "person_id",
        "registration_id",
        "province",
        "district",
        "priority_group",
        "registered_at",
        "institution_id",
        "appointment_id",
        "appointment_at",
        "appointment_site_id",
        "doses",
        "first_dose_date",
        "completed_date",
    ],
    "covidtech.vaccination.StockDrawn": [
        "event_id",
        "dose_id",
        "province",
        "vaccine",
        "administered_at",
    ],
    "covidtech.ops.DeadLetter": [
        "source_topic",
        "source_partition",
        "source_offset",
        "key",
        "value",
        "error",
    ],
    "covidtech.access.GrantIssued": [
        "event_id",
        "grant_id",
        "token_id",
        "agency",
        "scopes",
        "purpose",
        "granted_by",
        "granted_by_grant_id",
        "granted_by_token_id",
        "granted_at",
        "expires_at",
    ],
    "covidtech.access.GrantRevoked": [
        "event_id",
        "grant_id",
        "token_id",
        "revoked_by",
        "revoked_at",
        "reason",
    ],
    "covidtech.access.PersonalDataRead": [
        "event_id",
        "read_at",
        "actor",
        "grant_id",
        "token_id",
        "scopes",
        "method",
        "route",
        "subject",
        "person_ids",
        "client_address",
        "status",
    ],
}

NULLABLE = {
    ("covidtech.people.PersonRegistered", "birth_year"),
    (CHECKIN, "device_id"),
    ("covidtech.checkin.HealthDeclarationSubmitted", "travelled_from_province"),
    ("covidtech.testing.SampleMember", "symptom_onset"),
    ("covidtech.testing.SampleCollected", "lab_id"),
    ("covidtech.testing.CaseConfirmed", "symptom_onset"),
    ("covidtech.testing.CaseConfirmed", "resulted_at"),
    ("covidtech.vaccination.PersonCoverageStatus", "first_dose_date"),
    ("covidtech.vaccination.PersonCoverageStatus", "completed_date"),
    ("covidtech.ops.DeadLetter", "key"),
    ("covidtech.access.GrantIssued", "granted_by_grant_id"),
    ("covidtech.access.GrantIssued", "granted_by_token_id"),
    ("covidtech.access.GrantRevoked", "reason"),
    ("covidtech.access.PersonalDataRead", "grant_id"),
    ("covidtech.access.PersonalDataRead", "client_address"),
    ("covidtech.vaccination.VaccinationRegistered", "institution_id"),
    ("covidtech.vaccination.VaccinationRegistered", "birth_year"),
    ("covidtech.vaccination.AppointmentCancelled", "reason"),
    ("covidtech.vaccination.PersonRegistrationStatus", "institution_id"),
    ("covidtech.vaccination.PersonRegistrationStatus", "appointment_id"),
    ("covidtech.vaccination.PersonRegistrationStatus", "appointment_at"),
    ("covidtech.vaccination.PersonRegistrationStatus", "appointment_site_id"),
    ("covidtech.vaccination.PersonRegistrationStatus", "first_dose_date"),
    ("covidtech.vaccination.PersonRegistrationStatus", "completed_date"),
}

ENUMS = {
    "covidtech.checkin.Direction": (["IN", "OUT"], None),
    "covidtech.checkin.ScanMethod": (["PERSON_SCANNED_VENUE", "STAFF_SCANNED_PERSON"], None),
    "covidtech.checkin.Symptom": (
        [
            "FEVER",
            "COUGH",
            "SORE_THROAT",
            "SHORTNESS_OF_BREATH",
            "LOSS_OF_TASTE_OR_SMELL",
            "FATIGUE",
            "MUSCLE_ACHE",
            "DIARRHOEA",
            "OTHER",
        ],
        "OTHER",
    ),
    "covidtech.testing.TestType": (["PCR", "RAPID_ANTIGEN"], None),
    "covidtech.testing.TestResult": (["POSITIVE", "NEGATIVE", "INVALID"], "INVALID"),
    "covidtech.exposure.Risk": (["HIGH", "LOW"], None),
    "covidtech.exposure.AlertStatus": (["ACTIVE", "WITHDRAWN"], None),
    "covidtech.vaccination.PriorityGroup": (
        [
            "HEALTH_WORKER",
            "FRONTLINE",
            "AGE_65_PLUS",
            "CHRONIC_CONDITION",
            "ESSENTIAL_SERVICE",
            "GENERAL",
            "AGE_12_17",
        ],
        "GENERAL",
    ),
    "covidtech.vaccination.DiscardReason": (
        [
            "EXPIRED",
            "COLD_CHAIN_FAILURE",
            "BROKEN_VIAL",
            "OPENED_VIAL_UNUSED",
            "CONTAMINATED",
            "OTHER",
        ],
        "OTHER",
    ),
}

NAMESPACES = {
    "covidtech.checkin",
    "covidtech.people",
    "covidtech.testing",
    "covidtech.vaccination",
    "covidtech.exposure",
    "covidtech.ops",
    "covidtech.access",
}

TIMESTAMP = {"type": "long", "logicalType": "timestamp-millis"}
DATE = {"type": "int", "logicalType": "date"}


def _raw_schemas() -> dict[str, dict[str, Any]]:
    """The .avsc files as written (unparsed), by file stem."""
    return {
        path.stem: json.loads(path.read_text(encoding="utf-8"))
        for path in sorted(SCHEMA_DIR.glob("*.avsc"))
    }


RAW = _raw_schemas()


def _records(schema: Any) -> list[tuple[str, dict[str, Any]]]:
    """(full name, record schema) of the record and every record nested in it."""
    found: list[tuple[str, dict[str, Any]]] = []

    def walk(node: Any, namespace: str) -> None:
        if isinstance(node, list):
            for item in node:
                walk(item, namespace)
        elif isinstance(node, dict):
            kind = node.get("type")
            if kind == "record":
                ns = node.get("namespace", namespace)
                found.append((f"{ns}.{node['name']}", node))
                for field in node["fields"]:
                    walk(field["type"], ns)
            elif kind == "array":
                walk(node["items"], namespace)
            elif isinstance(kind, list | dict):
                walk(kind, namespace)

    walk(schema, "")
    return found


def _enums(schema: Any, namespace: str = "") -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    if isinstance(schema, list):
        for item in schema:
            out.update(_enums(item, namespace))
    elif isinstance(schema, dict):
        kind = schema.get("type")
        ns = schema.get("namespace", namespace)
        if kind == "enum":
            out[f"{ns}.{schema['name']}"] = schema
        elif kind == "record":
            for field in schema["fields"]:
                out.update(_enums(field["type"], ns))
        elif kind == "array":
            out.update(_enums(schema["items"], ns))
    return out


def test_every_event_of_the_contract_has_exactly_one_file_named_by_its_full_name() -> None:
    assert set(RAW) == set(EXPECTED_FIELDS)
    for stem, schema in RAW.items():
        assert schema["type"] == "record"
        assert f"{schema['namespace']}.{schema['name']}" == stem
        assert schema["namespace"] in NAMESPACES


@pytest.mark.parametrize("name", sorted(EXPECTED_FIELDS))
def test_fields_follow_docs_events_md(name: str) -> None:
    assert [f["name"] for f in RAW[name]["fields"]] == EXPECTED_FIELDS[name]


def test_sample_member_fields() -> None:
    members = dict(_records(RAW["covidtech.testing.SampleCollected"]))[
        "covidtech.testing.SampleMember"
    ]
    assert [f["name"] for f in members["fields"]] == [
        "person_id",
        "lookup_code_sha256",
        "symptom_onset",
    ]


@pytest.mark.parametrize("name", sorted(EXPECTED_FIELDS))
def test_conventions(name: str) -> None:
    for record_name, record in _records(RAW[name]):
        assert record.get("doc"), f"{record_name} has no doc"
        for field in record["fields"]:
            key = (record_name, field["name"])
            ftype = field["type"]
            inner = ftype[1] if isinstance(ftype, list) else ftype
            if key in NULLABLE:
                assert isinstance(ftype, list) and ftype[0] == "null" and len(ftype) == 2, key
                assert "default" in field and field["default"] is None, key
            else:
                assert not isinstance(ftype, list), f"{key} is a union but not in NULLABLE"
            fname = field["name"]
            if fname.endswith(("_at", "_start", "_end", "_from", "_until")):
                assert inner == TIMESTAMP, key
            if fname == "symptom_onset" or fname.endswith("_date"):
                assert inner == DATE, key
            if fname.endswith("_dates"):
                assert inner == {"type": "array", "items": DATE}, key
    if name != "covidtech.ops.DeadLetter":
        first = RAW[name]["fields"][0]
        assert (first["name"], first["type"]) == ("event_id", "string")


def test_enums_have_the_agreed_symbols_and_defaults() -> None:
    found: dict[str, dict[str, Any]] = {}
    for schema in RAW.values():
        found.update(_enums(schema))
    assert set(found) == set(ENUMS)
    for name, (symbols, default) in ENUMS.items():
        assert found[name]["symbols"] == symbols, name
        assert found[name].get("default") == default, name
        assert found[name].get("doc"), name


# --- fingerprints -----------------------------------------------------------------------------

_EMPTY = 0xC15D213AA4D7A795


def _crc64_avro(data: bytes) -> int:
    """The Rabin fingerprint exactly as the Avro specification's reference code."""
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (_EMPTY & -(fp & 1))
        table.append(fp)
    fp = _EMPTY
    for byte in data:
        fp = (fp >> 8) ^ table[(fp ^ byte) & 0xFF]
    return fp


def test_reference_crc64_matches_the_avro_test_vector() -> None:
    # From the Avro project's schema test data: the 64-bit fingerprint of `"null"`.
    assert _crc64_avro(b'"null"') == 7195948357588979594


@pytest.mark.parametrize("name", sorted(EXPECTED_FIELDS))
def test_fingerprint_is_crc64_avro_of_canonical_form_little_endian(name: str) -> None:
    entry = Registry().schema(name)
    canonical = to_parsing_canonical_form(RAW[name])
    assert entry.canonical_form == canonical
    expected = _crc64_avro(canonical.encode("utf-8")).to_bytes(8, "little")
    assert len(entry.fingerprint) == 8
    assert entry.fingerprint == expected
    assert entry.fingerprint == bytes.fromhex(fastavro_fingerprint(canonical, "CRC-64-AVRO"))
    assert entry.header == MAGIC + expected
    assert canonical_fingerprint(canonical) == expected


def test_canonical_form_expands_nested_named_types() -> None:
    canonical = Registry().schema("covidtech.testing.SampleCollected").canonical_form
    assert '"name":"covidtech.testing.SampleMember","type":"record"' in canonical
    assert '"name":"covidtech.testing.TestType","type":"enum"' in canonical


def test_known_fingerprint_of_checkin_v1() -> None:
    # Pinned: changing CheckInScanned's canonical form changes this, which must come with a
    # copy of the old schema in schemas/avro/history/ so old bytes stay readable.
    assert Registry().schema(CHECKIN).fingerprint.hex() == "eff3f93a9fb6a9d3"


def test_docs_and_defaults_do_not_change_the_fingerprint() -> None:
    registry = Registry(None)
    current = copy.deepcopy(RAW[CHECKIN])
    plain = copy.deepcopy(current)
    plain.pop("doc")
    for field in plain["fields"]:
        field.pop("doc", None)
    assert registry.register(current).fingerprint == registry.register(plain).fingerprint


# --- evolution --------------------------------------------------------------------------------


def _checkin(**overrides: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "event_id": "scan-7f3a",
        "scanned_at": dt.datetime(2021, 8, 2, 1, 15, 30, 250_000, tzinfo=UTC),
        "received_at": dt.datetime(2021, 8, 2, 1, 15, 31, tzinfo=UTC),
        "person_id": "p-2b9c",
        "venue_id": "v-0042",
        "direction": "IN",
        "method": "PERSON_SCANNED_VENUE",
        "venue_province": "79",
        "venue_dwell_minutes": 45,
        "device_id": "phone-88",
    }
    record.update(overrides)
    return record


def _without_field(schema: dict[str, Any], field: str) -> dict[str, Any]:
    older = copy.deepcopy(schema)
    older["fields"] = [f for f in older["fields"] if f["name"] != field]
    return older


@pytest.mark.parametrize("field", ["device_id", "venue_dwell_minutes"])
def test_old_bytes_are_read_in_the_current_shape_with_defaults(field: str) -> None:
    old_schema = _without_field(RAW[CHECKIN], field)
    default = next(f["default"] for f in RAW[CHECKIN]["fields"] if f["name"] == field)

    # The old producer only knew the old schema.
    old_producer = Registry(None)
    old_producer.register(old_schema)
    old_record = {k: v for k, v in _checkin().items() if k != field}
    data = old_producer.encode(CHECKIN, old_record)

    # The new consumer keeps the old writer schema registered.
    consumer = Registry()
    old_entry = consumer.register(old_schema)
    assert consumer.schema(CHECKIN).fingerprint != old_entry.fingerprint, "current stays current"
    assert data[2:HEADER_SIZE] == old_entry.fingerprint

    event = consumer.decode(data)
    assert event == Event(CHECKIN, {**old_record, field: default})
    assert set(event.record) == set(EXPECTED_FIELDS[CHECKIN])
    assert consumer.decode(data, reader=CHECKIN) == event


def test_new_bytes_read_with_an_old_reader_schema_drop_the_new_field() -> None:
    data = Registry().encode(CHECKIN, _checkin())

    old_consumer = Registry()  # knows the new writer schema, reads into the old shape
    old_consumer.register(_without_field(RAW[CHECKIN], "device_id"), current=True)
    event = old_consumer.decode(data)
    expected = _checkin()
    del expected["device_id"]
    assert event == Event(CHECKIN, expected)


def test_unknown_enum_symbol_falls_back_to_the_readers_default() -> None:
    name = "covidtech.testing.SampleResulted"
    newer = copy.deepcopy(RAW[name])
    result_type = next(f["type"] for f in newer["fields"] if f["name"] == "result")
    result_type["symbols"].append("INCONCLUSIVE")

    newer_producer = Registry(None)
    newer_producer.register(newer)
    record = {
        "event_id": "res-1",
        "sample_id": "smp-1",
        "resulted_at": dt.datetime(2021, 8, 3, 9, 0, tzinfo=UTC),
        "lab_id": "lab-hcdc",
        "result": "INCONCLUSIVE",
    }
    data = newer_producer.encode(name, record)

    consumer = Registry()
    consumer.register(newer)
    assert consumer.decode(data).record["result"] == "INVALID"


def test_unknown_enum_symbol_without_default_is_incompatible() -> None:
    newer = copy.deepcopy(RAW[CHECKIN])
    direction = next(f["type"] for f in newer["fields"] if f["name"] == "direction")
    direction["symbols"].append("PASSING")
    producer = Registry(None)
    producer.register(newer)
    data = producer.encode(CHECKIN, _checkin(direction="PASSING"))

    consumer = Registry()
    consumer.register(newer)
    with pytest.raises(IncompatibleSchema):
        consumer.decode(data)


def test_a_renamed_reader_is_incompatible() -> None:
    data = Registry().encode(CHECKIN, _checkin())
    with pytest.raises(IncompatibleSchema):
        Registry().decode(data, reader="covidtech.exposure.VisitChanged")


def test_history_directory_keeps_old_writer_schemas(tmp_path: Path) -> None:
    (tmp_path / "history").mkdir()
    for stem, schema in RAW.items():
        (tmp_path / f"{stem}.avsc").write_text(json.dumps(schema), encoding="utf-8")
    old_schema = _without_field(RAW[CHECKIN], "device_id")
    (tmp_path / "history" / f"{CHECKIN}.v0.avsc").write_text(
        json.dumps(old_schema), encoding="utf-8"
    )
    old_producer = Registry(None)
    old_producer.register(old_schema)
    old_record = {k: v for k, v in _checkin().items() if k != "device_id"}
    data = old_producer.encode(CHECKIN, old_record)

    registry = Registry(tmp_path)
    assert registry.names == tuple(sorted(EXPECTED_FIELDS))
    assert len(registry.schemas()) == len(EXPECTED_FIELDS) + 1
    assert registry.schema(CHECKIN).fingerprint == Registry().schema(CHECKIN).fingerprint
    assert registry.decode(data).record == {**old_record, "device_id": None}


def test_named_types_in_sibling_files_are_expanded_before_fingerprinting(tmp_path: Path) -> None:
    # The same CheckInScanned, but with its enums moved to their own files.
    split = copy.deepcopy(RAW[CHECKIN])
    for field in split["fields"]:
        if isinstance(field["type"], dict) and field["type"].get("type") == "enum":
            enum = {**field["type"], "namespace": "covidtech.checkin"}
            (tmp_path / f"covidtech.checkin.{enum['name']}.avsc").write_text(
                json.dumps(enum), encoding="utf-8"
            )
            field["type"] = f"covidtech.checkin.{enum['name']}"
    (tmp_path / f"{CHECKIN}.avsc").write_text(json.dumps(split), encoding="utf-8")

    registry = Registry(tmp_path)
    assert registry.names == (CHECKIN,)
    assert registry.schema(CHECKIN).fingerprint == Registry().schema(CHECKIN).fingerprint
