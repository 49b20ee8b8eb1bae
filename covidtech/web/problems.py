"""RFC 9457 problem details: the one catalogue of error classes both APIs answer, and the one
``Problem`` they raise.

A problem body is ``application/problem+json``::

    {"type": "urn:covidtech:problem:forged-qr", "title": "Forged QR code", "status": 422,
     "detail": "...", "instance": "/v1/scans", "field": "venue_qr",
     "errors": [{"field": "venue_qr", "code": "forged-qr", "type": "urn:...", "message": "..."}]}

``type`` is stable per error class (a URN: an identifier, not a page to fetch): a client that
handles ``urn:covidtech:problem:token-expired`` from the ingest API handles it from the read
API too. For field errors, ``errors`` lists every offending field by its path in the body and
``field`` repeats the first one; when all errors share one class, the problem's ``type`` is
that class (a forged QR code answers ``...:forged-qr``), mixed classes answer
``...:validation-failed``. A problem is never cached (``Cache-Control: no-store``).

Each API maps its own exceptions to these (``api/problems.py``, ``producers/problems.py``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from starlette.responses import Response

__all__ = [
    "PROBLEM_MEDIA_TYPE",
    "PROBLEM_TYPES",
    "TYPE_PREFIX",
    "FieldError",
    "Problem",
    "ProblemType",
    "item_problem",
    "problem_response",
    "type_uri",
    "validation_problem",
]

PROBLEM_MEDIA_TYPE = "application/problem+json"
TYPE_PREFIX = "urn:covidtech:problem:"


@dataclass(frozen=True, slots=True)
class ProblemType:
    """An error class: its slug (the end of the type URI), title and HTTP status."""

    slug: str
    title: str
    status: int


def type_uri(slug: str) -> str:
    """The stable ``type`` URI of an error class."""
    return TYPE_PREFIX + slug


@dataclass(frozen=True, slots=True)
class FieldError:
    """One problem with one field: where (a path), what kind (a stable code) and why."""

    field: str
    code: str
    message: str


_TYPES = (
    # request shape
    ProblemType("invalid-parameter", "Query or path parameter is invalid", 400),
    ProblemType("invalid-page-token", "Page token is invalid or belongs to another query", 400),
    ProblemType("invalid-last-event-id", "Last-Event-ID is not one this stream sent", 400),
    ProblemType("filter-not-supported", "This filter is not available yet", 400),
    ProblemType("malformed-json", "Body is not valid JSON", 400),
    ProblemType("unsupported-media-type", "Body must be application/json", 415),
    ProblemType("body-too-large", "Body too large", 413),
    ProblemType("not-found", "No such resource", 404),
    ProblemType("method-not-allowed", "Method not allowed", 405),
    ProblemType("rate-limited", "Too many requests, retry later", 429),
    # authentication and authorisation
    ProblemType("token-missing", "Bearer token required", 401),
    ProblemType("token-invalid", "Bearer token invalid", 401),
    ProblemType("token-expired", "Bearer token expired", 401),
    ProblemType("token-revoked", "Bearer token revoked", 401),
    ProblemType("insufficient-scope", "Token lacks the scope for this request", 403),
    # field validation (422); each is also an ``errors[].code``
    ProblemType("validation-failed", "Request has invalid fields", 422),
    ProblemType("missing", "Required field missing", 422),
    ProblemType("wrong-type", "Field has the wrong JSON type", 422),
    ProblemType("invalid-value", "Field value is invalid", 422),
    ProblemType("out-of-range", "Field value out of range", 422),
    ProblemType("unknown-enum", "Unknown enum value", 422),
    ProblemType("unknown-field", "Unknown field", 422),
    ProblemType("too-many-items", "Too many items", 422),
    ProblemType("too-few-items", "Too few items", 422),
    ProblemType("duplicate", "Duplicate value", 422),
    ProblemType("unknown-province", "Unknown province code", 422),
    ProblemType("malformed-qr", "Not a covidtech QR code", 422),
    ProblemType("forged-qr", "Forged QR code", 422),
    ProblemType("wrong-qr-kind", "QR code of the wrong kind", 422),
    ProblemType("unknown-venue", "Unknown venue", 422),
    ProblemType("scan-too-late", "Scan received too late", 422),
    ProblemType("scan-in-future", "Scan time in the future", 422),
    ProblemType("time-too-old", "Time too far in the past", 422),
    ProblemType("time-in-future", "Time in the future", 422),
    ProblemType("pool-size", "Pool too large or empty", 422),
    ProblemType("duplicate-member", "Person twice in one sample", 422),
    ProblemType("unknown-vaccine", "Unknown vaccine product", 422),
    ProblemType("result-before-collection", "Result dated before collection", 422),
    ProblemType("site-ambiguous", "Token holds several sites or labs", 422),
    # state
    ProblemType("unknown-sample", "Unknown sample", 404),
    ProblemType("unknown-venue-id", "Unknown venue", 404),
    ProblemType("result-conflict", "Sample already has another result", 409),
    ProblemType("sample-exists", "Sample already collected", 409),
    ProblemType("id-conflict", "Id already used for other content", 409),
    # faults
    ProblemType("store-unavailable", "Database unavailable, retry later", 503),
    ProblemType("broker-unavailable", "Event log unavailable, retry later", 503),
    ProblemType("audit-unavailable", "Audit log unavailable, retry later", 503),
    ProblemType("not-ready", "Not ready", 503),
    ProblemType("internal-error", "Internal error", 500),
)

#: Every problem class by slug.
PROBLEM_TYPES: Mapping[str, ProblemType] = {t.slug: t for t in _TYPES}


class Problem(Exception):
    """An error answered as problem details; raise it anywhere in a route."""

    def __init__(
        self,
        slug: str,
        detail: str,
        *,
        errors: Sequence[FieldError] = (),
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        kind = PROBLEM_TYPES[slug]
        super().__init__(detail)
        self.kind = kind
        self.detail = detail
        self.errors = tuple(errors)
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})

    @property
    def status(self) -> int:
        return self.kind.status

    def body(self, instance: str | None = None) -> dict[str, Any]:
        """The problem-details object (without ``instance`` for batch items)."""
        out: dict[str, Any] = {
            "type": type_uri(self.kind.slug),
            "title": self.kind.title,
            "status": self.kind.status,
            "detail": self.detail,
        }
        if instance is not None:
            out["instance"] = instance
        if self.errors:
            out["field"] = self.errors[0].field
            out["errors"] = [
                {
                    "field": e.field,
                    "code": e.code,
                    "type": type_uri(e.code if e.code in PROBLEM_TYPES else "validation-failed"),
                    "message": e.message,
                }
                for e in self.errors
            ]
        out.update(self.extra)
        return out


def validation_problem(errors: Sequence[FieldError]) -> Problem:
    """A 422 (or the shared class's status) naming every offending field."""
    codes = {e.code for e in errors}
    slug = codes.pop() if len(codes) == 1 else "validation-failed"
    if slug not in PROBLEM_TYPES:
        slug = "validation-failed"
    if len(errors) == 1:
        detail = f"{errors[0].field}: {errors[0].message}"
    else:
        detail = f"{len(errors)} fields are invalid: " + ", ".join(
            dict.fromkeys(e.field for e in errors)
        )
    return Problem(slug, detail, errors=errors)


def item_problem(errors: Sequence[FieldError]) -> dict[str, Any]:
    """The problem body of one rejected batch item."""
    return validation_problem(errors).body()


def problem_response(problem: Problem, instance: str | None = None) -> Response:
    """The HTTP response of a problem (never cached)."""
    body = json.dumps(problem.body(instance), ensure_ascii=False, separators=(",", ":"))
    return Response(
        body.encode("utf-8"),
        status_code=problem.status,
        media_type=PROBLEM_MEDIA_TYPE,
        headers={"Cache-Control": "no-store", **problem.headers},
    )
