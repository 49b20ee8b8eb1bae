"""The paths of the ingest API's OpenAPI document but the vaccination programme's: venues,
people, scans, declarations, samples and results, doses, the vaccine list and operations."""

from __future__ import annotations

from typing import Any

from covidtech.tokens import ScopeKind
from producers.openapi.parts import (
    Schema,
    id_schema,
    json_content,
    problem_responses,
    ref,
    write_operation,
    x_scopes,
)
from producers.requests.common import SAMPLE_ID, VENUE_ID

__all__ = ["paths"]


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
                    "schema": id_schema(VENUE_ID.pattern, "Another id is an unknown venue (404)."),
                }
            ],
            "responses": {
                "200": {
                    "description": "The poster.",
                    "content": {media: {"schema": {"type": "string", "format": "binary"}}},
                },
                **problem_responses(401, 403, 404, 503),
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
    return {"oneOf": [ref(single), ref(batch)]}


def paths() -> dict[str, Any]:
    """The path items of these routes, in the order of the app's route table."""
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
        "schema": id_schema(SAMPLE_ID.pattern, ""),
    }
    return {
        "/v1/venues": {
            "post": write_operation(
                "Register a venue",
                "venue-admin:<province of the venue>",
                ref("VenueRequest"),
                {
                    "201": json_content("Registered.", ref("VenueCreated")),
                    "200": json_content(
                        "The venue registered before under this Idempotency-Key.",
                        ref("VenueCreated"),
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
            "post": write_operation(
                "Issue a person id and personal QR (and, to an app, the person's own token)",
                "app, site:<id>@<code> or institution:<id>",
                ref("PersonRequest"),
                {
                    "201": json_content("Registered.", ref("PersonCreated")),
                    "200": json_content(
                        "The person issued before under this Idempotency-Key.",
                        ref("PersonCreated"),
                    ),
                },
                parameters=[idem_header],
                kinds=(ScopeKind.APP, ScopeKind.SITE, ScopeKind.INSTITUTION),
                extra_errors=(409,),
            )
        },
        "/v1/people/sessions": {
            "post": write_operation(
                "Sign a person's app in with the person's QR: a fresh person token",
                "app (the QR is the credential, as on a printed PC-Covid QR)",
                ref("SignIn"),
                {"201": json_content("Signed in.", ref("PersonSession"))},
                kinds=(ScopeKind.APP,),
            )
        },
        "/v1/scans": {
            "post": write_operation(
                "Record a check-in scan, or a batch of up to 500",
                "person:<id> (the person's own app scans the venue: that person only), "
                "venue:<venue id>@<province> or venue-admin:<province> (staff scan the person)",
                _single_or_batch("Scan", "ScanBatch"),
                {
                    "202": json_content(
                        "Scan written; the person's check-in status.", ref("ScanAccepted")
                    ),
                    "200": json_content(
                        "Batch: one result per item; single: already written (duplicate).",
                        {"oneOf": [ref("ScanBatchResult"), ref("ScanAccepted")]},
                    ),
                },
                kinds=(ScopeKind.PERSON, ScopeKind.VENUE, ScopeKind.VENUE_ADMIN),
                extra_errors=(409,),
            )
        },
        "/v1/declarations": {
            "post": write_operation(
                "Submit a health declaration",
                "app (a person's own token: that person only)",
                ref("Declaration"),
                {
                    "202": json_content("Written.", ref("Accepted")),
                    "200": json_content("Already written.", ref("Accepted")),
                },
                kinds=(ScopeKind.APP,),
                extra_errors=(409,),
            )
        },
        "/v1/samples": {
            "post": write_operation(
                "Record a sample (one person or a pool of 2-10)",
                "site:<id>@<the sample's province>",
                ref("Sample"),
                {
                    "201": json_content(
                        "Collected; lookup codes shown once.", ref("SampleCollected")
                    ),
                    "200": json_content("Same collection again.", ref("SampleCollected")),
                },
                kinds=(ScopeKind.SITE,),
                extra_errors=(409,),
            )
        },
        "/v1/samples/{sample_id}/result": {
            "post": write_operation(
                "Record a lab result",
                "lab:<id>@<the sample's province>, or lab:<id>@<any> for a sample sent to it",
                ref("Result"),
                {
                    "202": json_content("Written.", ref("Accepted")),
                    "200": json_content("The same result again (idempotent).", ref("Accepted")),
                },
                kinds=(ScopeKind.LAB,),
                extra_errors=(404, 409),
                parameters=[sample_param],
            )
        },
        "/v1/doses": {
            "post": write_operation(
                "Record a dose, or a batch of up to 500",
                "site:<id>@<the dose's residence_province>",
                _single_or_batch("Dose", "DoseBatch"),
                {
                    "202": json_content("Dose written.", ref("Accepted")),
                    "200": json_content(
                        "Batch results, or a known dose_id.",
                        {"oneOf": [ref("BatchResult"), ref("Accepted")]},
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
                    "200": json_content("The fixed product list.", ref("Vaccines")),
                    **problem_responses(401),
                },
            }
        },
        "/healthz": _simple("Liveness"),
        "/readyz": _simple(
            "Readiness: broker answers, its topics exist, topic views caught up "
            "(the check-in status store is reported under optional, never required)"
        ),
        "/metrics": _simple("Prometheus metrics", "text/plain"),
        "/openapi.json": _simple("This document"),
    }
