"""The vaccination programme's paths of the ingest API's OpenAPI document.

Their bodies are inline, and they word their descriptions and problem responses in their own
way (``Scope:``, fewer statuses, a province without the census note), as they were written
beside the programme's routes; the document is kept as it is, byte for byte.
"""

from __future__ import annotations

from typing import Any

from covidtech.tokens import ScopeKind
from domain.programme import DiscardReason, PriorityGroup
from producers.openapi.parts import Schema, obj, ref, x_scopes
from producers.requests.common import CLIENT_ID, PERSON_ID, PROGRAMME_LIMITS

__all__ = ["paths"]

_STR_ID: Schema = {"type": "string", "pattern": f"^{CLIENT_ID.pattern}$"}
_PROVINCE: Schema = {"type": "string", "pattern": "^[0-9]{2}$", "description": "GSO province code."}
_TIME: Schema = {"type": "string", "format": "date-time"}
_PERSON: dict[str, Schema] = {
    "person_qr": {"type": "string", "description": "The person's signed QR payload."},
    "person_id": {"type": "string", "pattern": f"^{PERSON_ID.pattern}$"},
}
_TEXT: Schema = {
    "type": "string",
    "minLength": 1,
    "maxLength": 64,
    "description": "Human text: stripped; must not be blank nor contain control characters.",
}


def _operation(
    summary: str,
    scope: str,
    schema: Schema,
    id_name: str,
    answered: dict[str, Any] | None = None,
    *,
    kinds: tuple[ScopeKind, ...],
) -> dict[str, Any]:
    accepted: Schema = {
        "type": "object",
        "required": ["status"],
        "properties": {
            id_name: {"type": "string"},
            **(answered or {}),
            "status": {"type": "string"},
        },
        "additionalProperties": False,
    }
    problem = {"content": {"application/problem+json": {"schema": ref("Problem")}}}
    return {
        "summary": summary,
        "description": f"Scope: {scope}.",
        "security": [{"bearer": []}],
        "x-scopes": x_scopes(*kinds),
        "requestBody": {"required": True, "content": {"application/json": {"schema": schema}}},
        "responses": {
            "202": {
                "description": "Written.",
                "content": {"application/json": {"schema": accepted}},
            },
            "200": {
                "description": "Already written (duplicate); a list: one result per item.",
                "content": {"application/json": {"schema": {"type": "object"}}},
            },
            **{
                str(status): {"description": text, **problem}
                for status, text in (
                    (400, "Malformed JSON."),
                    (401, "Missing or invalid token."),
                    (403, "The token's scopes do not cover this write."),
                    (409, "The id was already used for other content."),
                    (422, "Invalid fields (each one named)."),
                    (503, "Kafka unavailable: retry with the same ids after Retry-After."),
                )
            },
        },
    }


def paths() -> dict[str, Any]:
    """The programme's path items (merged into the ingest document after the others)."""
    group = {"type": "string", "enum": [g.value for g in PriorityGroup]}
    registration = obj(
        ["registration_id", "province", "district", "priority_group"],
        {
            "registration_id": _STR_ID,
            **_PERSON,
            "province": _PROVINCE,
            "district": _TEXT,
            "priority_group": group,
            "birth_year": {"type": "integer", "description": "Fits the group's ages (422)."},
        },
        one_person=True,
    )
    registrations = obj(
        ["registrations"],
        {
            "institution_id": {"type": "string"},
            "registrations": {
                "type": "array",
                "minItems": 1,
                "maxItems": PROGRAMME_LIMITS.max_bulk_registrations,
                "items": registration,
                "description": "Items are validated one by one: an invalid item is rejected "
                "in the results and the others are written; all rejected: 422.",
            },
        },
    )
    target = obj(
        ["people_vaccinated", "people_fully_vaccinated"],
        {
            "people_vaccinated": {"type": "integer", "minimum": 0},
            "people_fully_vaccinated": {"type": "integer", "minimum": 0},
        },
    )
    return {
        "/v1/vaccination/registrations": {
            "post": _operation(
                "Register a person, or an institution's list of up to 1,000",
                "app (one person, by person_qr) or institution:<id>",
                {"oneOf": [registration, registrations]},
                "registration_id",
                kinds=(ScopeKind.APP, ScopeKind.INSTITUTION),
            )
        },
        "/v1/vaccination/appointments": {
            "post": _operation(
                "Schedule an appointment",
                "site:<id>",
                obj(
                    ["appointment_id", "appointment_at"],
                    {
                        "appointment_id": _STR_ID,
                        **_PERSON,
                        "appointment_at": _TIME,
                        "site_id": {"type": "string"},
                    },
                    one_person=True,
                ),
                "appointment_id",
                kinds=(ScopeKind.SITE,),
            )
        },
        "/v1/vaccination/appointments/{appointment_id}/cancel": {
            "post": {
                **_operation(
                    "Cancel an appointment",
                    "site:<id>",
                    obj(
                        [],
                        {
                            **_PERSON,
                            "reason": {**_TEXT, "maxLength": 200},
                            "site_id": {"type": "string"},
                        },
                        one_person=True,
                    ),
                    "appointment_id",
                    kinds=(ScopeKind.SITE,),
                ),
                "parameters": [
                    {"name": "appointment_id", "in": "path", "required": True, "schema": _STR_ID}
                ],
            }
        },
        "/v1/vaccination/allocations": {
            "post": _operation(
                "Allocate doses of a product to a province",
                "moh",
                obj(
                    ["allocation_id", "province", "vaccine", "doses"],
                    {
                        "allocation_id": _STR_ID,
                        "province": _PROVINCE,
                        "vaccine": {"type": "string"},
                        "doses": {"type": "integer", "minimum": 1},
                    },
                ),
                "allocation_id",
                kinds=(ScopeKind.MOH,),
            )
        },
        "/v1/vaccination/discards": {
            "post": _operation(
                "Report discarded doses",
                "site:<id>@<province>",
                obj(
                    ["discard_id", "province", "vaccine", "doses", "reason", "discarded_at"],
                    {
                        "discard_id": _STR_ID,
                        "province": _PROVINCE,
                        "vaccine": {"type": "string"},
                        "doses": {"type": "integer", "minimum": 1},
                        "reason": {"type": "string", "enum": [r.value for r in DiscardReason]},
                        "discarded_at": _TIME,
                        "site_id": {"type": "string"},
                    },
                ),
                "discard_id",
                kinds=(ScopeKind.SITE,),
            )
        },
        "/v1/vaccination/plans/{province}": {
            "put": {
                **_operation(
                    "Set a province's plan (the latest wins)",
                    "moh or province:<code>",
                    obj(
                        ["target_date", "targets"],
                        {
                            "plan_id": _STR_ID,
                            "target_date": {"type": "string", "format": "date"},
                            "targets": {
                                "type": "object",
                                "propertyNames": group,
                                "additionalProperties": target,
                                "minProperties": 1,
                            },
                        },
                    ),
                    "plan_id",
                    kinds=(ScopeKind.MOH, ScopeKind.PROVINCE),
                    answered={"province": _PROVINCE},
                ),
                "parameters": [
                    {"name": "province", "in": "path", "required": True, "schema": _PROVINCE}
                ],
            }
        },
    }
