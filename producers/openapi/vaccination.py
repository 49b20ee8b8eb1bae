"""The vaccination programme's request bodies and answers in the ingest API's document.

Their bodies are inline in their operations (named by the route declarations in
``producers/routes/{registrations,appointments,stock,plans}.py``), and their 202 answers
name the id written (:func:`answers`).
"""

from __future__ import annotations

from typing import Any

from domain.programme import DiscardReason, PriorityGroup
from producers.openapi.parts import Schema, obj, path_param
from producers.requests.common import CLIENT_ID, PERSON_ID, PROGRAMME_LIMITS

__all__ = [
    "ALLOCATION",
    "APPOINTMENT",
    "APPOINTMENT_ID",
    "CANCELLATION",
    "DISCARD",
    "PLAN",
    "PLAN_ANSWERED",
    "PLAN_PROVINCE",
    "REGISTRATIONS",
    "answers",
]

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


def answers(id_name: str, answered: dict[str, Schema] | None = None) -> dict[str, Any]:
    """The success answers of a programme write: 202 naming ``id_name`` (and ``answered``),
    200 for a duplicate or a list's results."""
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
    return {
        "202": {
            "description": "Written.",
            "content": {"application/json": {"schema": accepted}},
        },
        "200": {
            "description": "Already written (duplicate); a list: one result per item.",
            "content": {"application/json": {"schema": {"type": "object"}}},
        },
    }


_GROUP: Schema = {"type": "string", "enum": [g.value for g in PriorityGroup]}
_REGISTRATION = obj(
    ["registration_id", "province", "district", "priority_group"],
    {
        "registration_id": _STR_ID,
        **_PERSON,
        "province": _PROVINCE,
        "district": _TEXT,
        "priority_group": _GROUP,
        "birth_year": {"type": "integer", "description": "Fits the group's ages (422)."},
    },
    one_person=True,
)
#: ``POST /v1/vaccination/registrations``: one person, or an institution's list.
REGISTRATIONS: Schema = {
    "oneOf": [
        _REGISTRATION,
        obj(
            ["registrations"],
            {
                "institution_id": {"type": "string"},
                "registrations": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": PROGRAMME_LIMITS.max_bulk_registrations,
                    "items": _REGISTRATION,
                    "description": "Items are validated one by one: an invalid item is rejected "
                    "in the results and the others are written; all rejected: 422.",
                },
            },
        ),
    ]
}
#: ``POST /v1/vaccination/appointments``.
APPOINTMENT = obj(
    ["appointment_id", "appointment_at"],
    {
        "appointment_id": _STR_ID,
        **_PERSON,
        "appointment_at": _TIME,
        "site_id": {"type": "string"},
    },
    one_person=True,
)
#: ``POST /v1/vaccination/appointments/{appointment_id}/cancel``.
CANCELLATION = obj(
    [],
    {**_PERSON, "reason": {**_TEXT, "maxLength": 200}, "site_id": {"type": "string"}},
    one_person=True,
)
APPOINTMENT_ID = path_param("appointment_id", _STR_ID)
#: ``POST /v1/vaccination/allocations``.
ALLOCATION = obj(
    ["allocation_id", "province", "vaccine", "doses"],
    {
        "allocation_id": _STR_ID,
        "province": _PROVINCE,
        "vaccine": {"type": "string"},
        "doses": {"type": "integer", "minimum": 1},
    },
)
#: ``POST /v1/vaccination/discards``.
DISCARD = obj(
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
)
_TARGET = obj(
    ["people_vaccinated", "people_fully_vaccinated"],
    {
        "people_vaccinated": {"type": "integer", "minimum": 0},
        "people_fully_vaccinated": {"type": "integer", "minimum": 0},
    },
)
#: ``PUT /v1/vaccination/plans/{province}``.
PLAN = obj(
    ["target_date", "targets"],
    {
        "plan_id": _STR_ID,
        "target_date": {"type": "string", "format": "date"},
        "targets": {
            "type": "object",
            "propertyNames": _GROUP,
            "additionalProperties": _TARGET,
            "minProperties": 1,
        },
    },
)
PLAN_PROVINCE = path_param("province", _PROVINCE)
#: What a plan's 202 names besides its id.
PLAN_ANSWERED: dict[str, Schema] = {"province": _PROVINCE}
