"""The ingest API's OpenAPI 3.1 document, written by hand next to the validation it describes.

Schemas use JSON Schema 2020-12 (OpenAPI 3.1's dialect). Field limits mirror
``producers/requests.py``; ``tests/unit/test_ingest_validation.py`` checks the document's
structure and that every route of the app is described.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from covidtech.tokens import ScopeKind
from domain.vaccines import VACCINES
from producers.problems import PROBLEM_TYPES, type_uri
from producers.requests import (
    CLIENT_ID,
    PERSON_ID,
    SAMPLE_ID,
    SCOPE_ID,
    VENUE_ID,
    ScanMethod,
    Symptom,
)
from producers.vaccination import openapi_paths as vaccination_paths

__all__ = ["openapi_document"]

Schema = dict[str, Any]

_PROVINCE: Schema = {
    "type": "string",
    "pattern": "^[0-9]{2}$",
    "description": "GSO two-digit province code (63 provinces, 2021), e.g. 01 = Ha Noi.",
}
_TIME: Schema = {
    "type": "string",
    "format": "date-time",
    "description": "RFC 3339 with an offset (Z or +07:00).",
}


#: What ``Fields.text`` accepts, which a schema pattern would state only approximately.
_TEXT_RULE = (
    "Human text: leading and trailing white space is stripped; what remains must not be "
    "blank nor contain control characters (422)."
)
#: A person is named by exactly one of ``person_qr`` and ``person_id`` (both: 422).
_ONE_PERSON: list[Schema] = [{"required": ["person_qr"]}, {"required": ["person_id"]}]


def _text(max_length: int) -> Schema:
    return {"type": "string", "minLength": 1, "maxLength": max_length, "description": _TEXT_RULE}


#: How a batch's items are judged (a JSON schema cannot say it).
_PER_ITEM = (
    "Items are validated one by one: an invalid item is rejected in the results and the "
    "others are written (200); only when every item is rejected is the answer 422."
)


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _id(pattern: str, description: str) -> Schema:
    return {"type": "string", "pattern": f"^{pattern}$", "description": description}


def _or_null(schema: Schema) -> Schema:
    if {"type": "null"} in schema.get("anyOf", ()):
        return schema
    return {"anyOf": [schema, {"type": "null"}]}


def _obj(required: list[str], properties: dict[str, Schema], description: str = "") -> Schema:
    """A request object. An optional field sent as ``null`` is taken as absent (``Fields``),
    so each is documented as nullable; but a person is named by exactly one of ``person_qr``
    and ``person_id``, present even as ``null`` (both named: 422)."""
    out: Schema = {
        "type": "object",
        "required": required,
        "properties": {
            name: (
                schema
                if name in required or name in ("person_qr", "person_id")
                else _or_null(schema)
            )
            for name, schema in properties.items()
        },
        "additionalProperties": False,
    }
    if description:
        out["description"] = description
    return out


def _schemas() -> dict[str, Schema]:
    client_id = CLIENT_ID.pattern
    person_ref = {
        "person_qr": {"type": "string", "description": "The person's signed QR payload."},
        "person_id": _id(PERSON_ID.pattern, "Typed by staff when the QR cannot be scanned."),
    }
    item_result: Schema = {
        "type": "object",
        "required": ["index", "status"],
        "properties": {
            "index": {"type": "integer"},
            "status": {"enum": ["accepted", "duplicate", "rejected", "unavailable"]},
            "problem": _ref("Problem"),
        },
        "additionalProperties": True,
    }
    return {
        "Problem": {
            "type": "object",
            "description": "RFC 9457 problem details (application/problem+json).",
            "required": ["type", "title", "status"],
            "properties": {
                "type": {
                    "type": "string",
                    "format": "uri",
                    "enum": [type_uri(slug) for slug in PROBLEM_TYPES],
                },
                "title": {"type": "string"},
                "status": {"type": "integer"},
                "detail": {"type": "string"},
                "instance": {"type": "string"},
                "field": {"type": "string", "description": "The first offending field's path."},
                "errors": {"type": "array", "items": _ref("FieldError")},
                "results": {
                    "type": "array",
                    "items": item_result,
                    "description": "Per-item outcome of a batch answered 503.",
                },
                "limit": {"type": "integer"},
                "recorded_result": {"enum": ["POSITIVE", "NEGATIVE", "INVALID"]},
            },
        },
        "FieldError": {
            "type": "object",
            "required": ["field", "code", "type", "message"],
            "properties": {
                "field": {"type": "string", "examples": ["scans[3].venue_qr"]},
                "code": {"type": "string", "enum": sorted(PROBLEM_TYPES)},
                "type": {"type": "string", "format": "uri"},
                "message": {"type": "string"},
            },
        },
        "VenueRequest": _obj(
            ["name", "address", "province", "district", "category"],
            {
                "name": _text(200),
                "address": _text(500),
                "province": _PROVINCE,
                "district": _text(64),
                "category": _text(64),
                "default_dwell_minutes": {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": 720,
                    "default": 60,
                },
            },
        ),
        "VenueCreated": {
            "type": "object",
            "properties": {
                "venue_id": {"type": "string"},
                "venue_qr": {"type": "string"},
                "province": _PROVINCE,
                "default_dwell_minutes": {"type": "integer"},
                "poster_png": {"type": "string"},
                "poster_svg": {"type": "string"},
            },
        },
        "PersonRequest": _obj(
            ["province", "district"],
            {
                "province": _PROVINCE,
                "district": _text(64),
                "birth_year": {
                    "type": "integer",
                    "minimum": 1900,
                    "description": "At most the current year.",
                },
            },
        ),
        "PersonCreated": {
            "type": "object",
            "properties": {
                "person_id": {"type": "string"},
                "person_qr": {"type": "string"},
                "person_qr_png": {"type": "string", "contentEncoding": "base64"},
            },
        },
        "Scan": _obj(
            ["scan_id", "venue_qr", "person_qr", "scanned_at", "direction"],
            {
                "scan_id": _id(client_id, "Client-generated; idempotency key and event id."),
                "venue_qr": {"type": "string", "maxLength": 256},
                "person_qr": {"type": "string", "maxLength": 256},
                "scanned_at": {
                    **_TIME,
                    "description": "Device time; at most 72 h old and 5 min ahead.",
                },
                "direction": {"enum": ["IN", "OUT"]},
                "method": {
                    "enum": [m.value for m in ScanMethod],
                    "description": "Default: PERSON_SCANNED_VENUE for app tokens, else staff.",
                },
                "device_id": _id(SCOPE_ID.pattern, "Scanning device."),
            },
        ),
        "ScanBatch": _obj(
            ["scans"],
            {"scans": {"type": "array", "minItems": 1, "maxItems": 500, "items": _ref("Scan")}},
            _PER_ITEM,
        ),
        "Declaration": _obj(
            ["person_qr", "province", "contact_with_case"],
            {
                "declaration_id": _id(client_id, "Optional; makes retries idempotent."),
                "person_qr": {"type": "string", "maxLength": 256},
                "province": _PROVINCE,
                "symptoms": {
                    "type": "array",
                    "uniqueItems": True,
                    "items": {"enum": [s.value for s in Symptom]},
                },
                "contact_with_case": {"type": "boolean"},
                "travelled_from_province": {"anyOf": [_PROVINCE, {"type": "null"}]},
            },
        ),
        "SampleMember": {
            "type": "object",
            "properties": {
                **person_ref,
                "symptom_onset": {
                    "type": ["string", "null"],
                    "format": "date",
                    "description": "Local day of symptom onset, when the person has symptoms.",
                },
            },
            "oneOf": _ONE_PERSON,
            "additionalProperties": False,
        },
        "Sample": _obj(
            ["sample_id", "province", "test_type", "collected_at", "members"],
            {
                "sample_id": _id(SAMPLE_ID.pattern, "The tube's barcode."),
                "site_id": _id(SCOPE_ID.pattern, "Needed only if the token has several sites."),
                "province": _PROVINCE,
                "lab_id": _id(
                    SCOPE_ID.pattern,
                    "The lab the tube is sent to; it may result the sample whatever its own "
                    "province. Without it, labs of the sample's province may.",
                ),
                "test_type": {"enum": ["PCR", "RAPID_ANTIGEN"]},
                "collected_at": _TIME,
                "members": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": 10,
                    "items": _ref("SampleMember"),
                    "description": "One person, or a pool of 2-10.",
                },
            },
        ),
        "SampleCollected": {
            "type": "object",
            "properties": {
                "sample_id": {"type": "string"},
                "site_id": {"type": "string"},
                "status": {"enum": ["accepted", "duplicate"]},
                "members": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "person_id": {"type": "string"},
                            "lookup_code": {
                                "type": "string",
                                "description": "Shown once; only its SHA-256 is stored.",
                            },
                        },
                    },
                },
            },
        },
        "Result": _obj(
            ["result"],
            {
                "result": {"enum": ["POSITIVE", "NEGATIVE", "INVALID"]},
                "resulted_at": {**_TIME, "description": "Default: now."},
                "lab_id": _id(SCOPE_ID.pattern, "Needed only if the token has several labs."),
            },
        ),
        "Dose": {
            **_obj(
                [
                    "dose_id",
                    "administered_at",
                    "vaccine",
                    "birth_year",
                    "residence_province",
                ],
                {
                    "dose_id": _id(client_id, "Client-generated; idempotency key and event id."),
                    **person_ref,
                    "administered_at": {**_TIME, "description": "At most 30 days old."},
                    "site_id": _id(SCOPE_ID.pattern, "Needed only if the token has several sites."),
                    "vaccine": {"enum": list(VACCINES)},
                    "birth_year": {
                        "type": "integer",
                        "minimum": 1900,
                        "description": "At most the current year.",
                    },
                    "residence_province": _PROVINCE,
                },
            ),
            "oneOf": _ONE_PERSON,
        },
        "DoseBatch": _obj(
            ["doses"],
            {"doses": {"type": "array", "minItems": 1, "maxItems": 500, "items": _ref("Dose")}},
            _PER_ITEM,
        ),
        "Accepted": {
            "type": "object",
            "required": ["status"],
            "properties": {"status": {"enum": ["accepted", "duplicate"]}},
            "additionalProperties": True,
        },
        "BatchResult": {
            "type": "object",
            "required": ["accepted", "duplicate", "rejected", "results"],
            "properties": {
                "accepted": {"type": "integer"},
                "duplicate": {"type": "integer"},
                "rejected": {"type": "integer"},
                "results": {"type": "array", "items": item_result},
            },
        },
        "Vaccines": {
            "type": "object",
            "properties": {
                "vaccines": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "code": {"type": "string"},
                            "name": {"type": "string"},
                            "single_dose": {"type": "boolean"},
                        },
                    },
                }
            },
        },
    }


def _problem_responses(*statuses: int) -> dict[str, Any]:
    problem = {"application/problem+json": {"schema": _ref("Problem")}}
    descriptions = {
        400: "Malformed JSON.",
        401: "Missing, invalid, expired or revoked token.",
        403: "The token lacks the scope.",
        404: "Unknown resource.",
        409: "Conflicts with what was recorded.",
        413: "Body over the size limit (1 MiB).",
        415: "Body is not application/json.",
        422: "Invalid fields; every offending field is named in errors.",
        503: "The event log is unavailable; retry after Retry-After seconds with the same ids.",
    }
    out: dict[str, Any] = {}
    for status in statuses:
        response: dict[str, Any] = {"description": descriptions[status], "content": problem}
        if status == 503:
            response["headers"] = {"Retry-After": {"schema": {"type": "integer"}}}
        out[str(status)] = response
    return out


_WRITE_ERRORS = (400, 401, 403, 413, 415, 422, 503)


def x_scopes(*kinds: ScopeKind) -> list[str]:
    """An operation's ``x-scopes``: the scope kinds of which its token must hold one (the
    operation may then check the scope's value against what is written, 403 if it does not
    cover it). The ingest API's scope matrix is generated from these."""
    return [k.value for k in kinds]


def _write(
    summary: str,
    scopes: str,
    request: Schema,
    responses: dict[str, Any],
    *,
    kinds: tuple[ScopeKind, ...],
    extra_errors: tuple[int, ...] = (),
    parameters: list[Schema] | None = None,
) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": summary,
        "description": f"Scopes: {scopes}.",
        "security": [{"bearer": []}],
        "x-scopes": x_scopes(*kinds),
        "requestBody": {"required": True, "content": {"application/json": {"schema": request}}},
        "responses": {**responses, **_problem_responses(*sorted({*_WRITE_ERRORS, *extra_errors}))},
    }
    if parameters:
        op["parameters"] = parameters
    return op


def _json(description: str, schema: Schema) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _poster(kind: str, media: str) -> dict[str, Any]:
    return {
        "get": {
            "summary": f"The venue's printable A4 poster ({kind})",
            "description": "Scopes: venue-admin:<the venue's province>.",
            "security": [{"bearer": []}],
            "x-scopes": x_scopes(ScopeKind.VENUE_ADMIN),
            "parameters": [
                {
                    "name": "venue_id",
                    "in": "path",
                    "required": True,
                    "schema": _id(VENUE_ID.pattern, "Another id is an unknown venue (404)."),
                }
            ],
            "responses": {
                "200": {
                    "description": "The poster.",
                    "content": {media: {"schema": {"type": "string", "format": "binary"}}},
                },
                **_problem_responses(401, 403, 404, 503),
            },
        }
    }


def _simple(summary: str, media: str = "application/json") -> dict[str, Any]:
    return {
        "get": {
            "summary": summary,
            "security": [],
            "responses": {"200": {"description": "OK", "content": {media: {}}}},
        }
    }


def _single_or_batch(single: str, batch: str) -> Schema:
    return {"oneOf": [_ref(single), _ref(batch)]}


@cache
def openapi_document() -> dict[str, Any]:
    """The whole document (computed once)."""
    idem_header = {
        "name": "Idempotency-Key",
        "in": "header",
        "required": False,
        "schema": {"type": "string", "pattern": "^[A-Za-z0-9_.:-]{1,128}$"},
        "description": "A retry with the same key returns the same resource (per instance).",
    }
    sample_param = {
        "name": "sample_id",
        "in": "path",
        "required": True,
        "schema": _id(SAMPLE_ID.pattern, ""),
    }
    return {
        "openapi": "3.1.0",
        "jsonSchemaDialect": "https://spec.openapis.org/oas/3.1/dialect/base",
        "info": {
            "title": "covidtech ingest API",
            "version": "1.0.0",
            "description": (
                "Writes of the outbreak-response backend. Every 2xx answer means the event was "
                "acknowledged by Kafka (acks=all). Errors are RFC 9457 problem details. "
                "An integer field takes a JSON integer: 2.0 is refused (422)."
            ),
        },
        "servers": [{"url": "/"}],
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
            },
            "schemas": _schemas(),
        },
        "paths": {
            "/v1/venues": {
                "post": _write(
                    "Register a venue",
                    "venue-admin:<province of the venue>",
                    _ref("VenueRequest"),
                    {
                        "201": _json("Registered.", _ref("VenueCreated")),
                        "200": _json(
                            "The venue registered before under this Idempotency-Key.",
                            _ref("VenueCreated"),
                        ),
                    },
                    parameters=[idem_header],
                    kinds=(ScopeKind.VENUE_ADMIN,),
                    extra_errors=(409,),
                )
            },
            "/v1/venues/{venue_id}/poster.png": _poster("PNG", "image/png"),
            "/v1/venues/{venue_id}/poster.svg": _poster("SVG", "image/svg+xml"),
            "/v1/people": {
                "post": _write(
                    "Issue a person id and personal QR",
                    "app, site:<id>@<code> or institution:<id>",
                    _ref("PersonRequest"),
                    {
                        "201": _json("Registered.", _ref("PersonCreated")),
                        "200": _json(
                            "The person issued before under this Idempotency-Key.",
                            _ref("PersonCreated"),
                        ),
                    },
                    parameters=[idem_header],
                    kinds=(ScopeKind.APP, ScopeKind.SITE, ScopeKind.INSTITUTION),
                    extra_errors=(409,),
                )
            },
            "/v1/scans": {
                "post": _write(
                    "Record a check-in scan, or a batch of up to 500",
                    "app (person scans the venue), venue-admin:<province> (staff scan the person)",
                    _single_or_batch("Scan", "ScanBatch"),
                    {
                        "202": _json("Scan written.", _ref("Accepted")),
                        "200": _json(
                            "Batch: one result per item; single: already written (duplicate).",
                            {"oneOf": [_ref("BatchResult"), _ref("Accepted")]},
                        ),
                    },
                    kinds=(ScopeKind.APP, ScopeKind.VENUE_ADMIN),
                    extra_errors=(409,),
                )
            },
            "/v1/declarations": {
                "post": _write(
                    "Submit a health declaration",
                    "app",
                    _ref("Declaration"),
                    {
                        "202": _json("Written.", _ref("Accepted")),
                        "200": _json("Already written.", _ref("Accepted")),
                    },
                    kinds=(ScopeKind.APP,),
                    extra_errors=(409,),
                )
            },
            "/v1/samples": {
                "post": _write(
                    "Record a sample (one person or a pool of 2-10)",
                    "site:<id>@<the sample's province>",
                    _ref("Sample"),
                    {
                        "201": _json(
                            "Collected; lookup codes shown once.", _ref("SampleCollected")
                        ),
                        "200": _json("Same collection again.", _ref("SampleCollected")),
                    },
                    kinds=(ScopeKind.SITE,),
                    extra_errors=(409,),
                )
            },
            "/v1/samples/{sample_id}/result": {
                "post": _write(
                    "Record a lab result",
                    "lab:<id>@<the sample's province>, or lab:<id>@<any> for a sample sent to it",
                    _ref("Result"),
                    {
                        "202": _json("Written.", _ref("Accepted")),
                        "200": _json("The same result again (idempotent).", _ref("Accepted")),
                    },
                    kinds=(ScopeKind.LAB,),
                    extra_errors=(404, 409),
                    parameters=[sample_param],
                )
            },
            "/v1/doses": {
                "post": _write(
                    "Record a dose, or a batch of up to 500",
                    "site:<id>@<the dose's residence_province>",
                    _single_or_batch("Dose", "DoseBatch"),
                    {
                        "202": _json("Dose written.", _ref("Accepted")),
                        "200": _json(
                            "Batch results, or a known dose_id.",
                            {"oneOf": [_ref("BatchResult"), _ref("Accepted")]},
                        ),
                    },
                    kinds=(ScopeKind.SITE,),
                    extra_errors=(409,),
                )
            },
            "/v1/vaccines": {
                "get": {
                    "summary": "Vaccine products (single-dose products marked)",
                    "description": "Any valid token.",
                    "security": [{"bearer": []}],
                    "x-scopes": x_scopes(*ScopeKind),
                    "responses": {
                        "200": _json("The fixed product list.", _ref("Vaccines")),
                        **_problem_responses(401),
                    },
                }
            },
            "/healthz": _simple("Liveness"),
            "/readyz": _simple(
                "Readiness: broker answers, its topics exist, topic views caught up"
            ),
            "/metrics": _simple("Prometheus metrics", "text/plain"),
            "/openapi.json": _simple("This document"),
            **vaccination_paths(),
        },
    }
