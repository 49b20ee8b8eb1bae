"""The ``components.schemas`` of the ingest API's OpenAPI document: the bodies of the check-in,
testing and dose routes, problem details and batch results. The bodies are generated from
their request models (``producers/requests/``: declared once, for validation and
documentation; a sample's members written in place); the programme's bodies are inline in
:mod:`producers.openapi.vaccination`.
"""

from __future__ import annotations

from covidtech.web.models import body_schema
from covidtech.web.problems import PROBLEM_TYPES, type_uri
from domain.status import CheckInStatus
from producers.openapi.parts import (
    PROVINCE,
    Schema,
    ref,
)
from producers.requests.checkins import (
    DeclarationBody,
    PersonBody,
    ScanBatchBody,
    ScanBody,
    SignInBody,
    VenueBody,
)
from producers.requests.testing import ResultBody, SampleBody
from producers.requests.vaccination import DoseBatchBody, DoseBody

__all__ = ["schemas"]

#: The person's own token (``POST /v1/people`` with an app token, ``POST /v1/people/sessions``).
PERSON_TOKEN: dict[str, Schema] = {
    "token": {"type": "string", "description": "Bearer token: scopes app and person:<id>."},
    "token_expires_at": {"type": "string", "format": "date-time"},
    "scopes": {"type": "array", "items": {"type": "string"}},
}


def schemas() -> dict[str, Schema]:
    """The named schemas (``#/components/schemas/<name>``)."""
    item_result: Schema = {
        "type": "object",
        "required": ["index", "status"],
        "properties": {
            "index": {"type": "integer"},
            "status": {"enum": ["accepted", "duplicate", "rejected", "unavailable"]},
            "problem": ref("Problem"),
        },
        "additionalProperties": True,
    }
    person_status: Schema = {
        "enum": [s.value for s in CheckInStatus],
        "description": "The scanned person's check-in status at scanned_at, for the scanner to "
        "show (PC-Covid's colour; no reason is given): RED a positive sample in the last 14 "
        "days; YELLOW a HIGH exposure in the last 14 days, or neither fully vaccinated nor "
        "recovered; GREEN otherwise; UNKNOWN when it could not be read in time (the scan is "
        "written all the same).",
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
                "errors": {"type": "array", "items": ref("FieldError")},
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
        "VenueRequest": body_schema(VenueBody),
        "VenueCreated": {
            "type": "object",
            "properties": {
                "venue_id": {"type": "string"},
                "venue_qr": {"type": "string"},
                "province": PROVINCE,
                "default_dwell_minutes": {"type": "integer"},
                "poster_png": {"type": "string"},
                "poster_svg": {"type": "string"},
            },
        },
        "PersonRequest": body_schema(PersonBody),
        "PersonCreated": {
            "type": "object",
            "properties": {
                "person_id": {"type": "string"},
                "person_qr": {"type": "string"},
                "person_qr_png": {"type": "string", "contentEncoding": "base64"},
                **PERSON_TOKEN,
            },
            "description": "token, token_expires_at and scopes only for an app token "
            "(self-registration): the person's own token.",
        },
        "SignIn": body_schema(SignInBody),
        "PersonSession": {
            "type": "object",
            "required": ["person_id", "token", "token_expires_at", "scopes"],
            "properties": {"person_id": {"type": "string"}, **PERSON_TOKEN},
        },
        "Scan": body_schema(ScanBody),
        "ScanBatch": body_schema(ScanBatchBody),
        "Declaration": body_schema(DeclarationBody),
        "Sample": body_schema(SampleBody),
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
        "Result": body_schema(ResultBody),
        "Dose": body_schema(DoseBody),
        "DoseBatch": body_schema(DoseBatchBody),
        "Accepted": {
            "type": "object",
            "required": ["status"],
            "properties": {"status": {"enum": ["accepted", "duplicate"]}},
            "additionalProperties": True,
        },
        "ScanAccepted": {
            "type": "object",
            "required": ["scan_id", "status", "person_status"],
            "properties": {
                "scan_id": {"type": "string"},
                "status": {"enum": ["accepted", "duplicate"]},
                "person_status": person_status,
            },
        },
        "ScanBatchResult": {
            "type": "object",
            "required": ["accepted", "duplicate", "rejected", "results"],
            "properties": {
                "accepted": {"type": "integer"},
                "duplicate": {"type": "integer"},
                "rejected": {"type": "integer"},
                "results": {
                    "type": "array",
                    "items": {
                        **item_result,
                        "properties": {
                            **item_result["properties"],
                            "scan_id": {"type": ["string", "null"]},
                            "person_status": {
                                **person_status,
                                "description": person_status["description"]
                                + " Present on accepted and duplicate items.",
                            },
                        },
                    },
                },
            },
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
