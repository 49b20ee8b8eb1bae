"""The vaccination programme's request bodies and answers in the ingest API's document.

Their bodies are inline in their operations (named by the route declarations in
``producers/routes/{registrations,appointments,stock,plans}.py``): the JSON Schemas of their
request models (``producers/requests/vaccination.py``, ``supply.py``); their 202 answers
name the id written (:func:`answers`).
"""

from __future__ import annotations

from typing import Any

from covidtech.web.models import body_schema
from producers.openapi.parts import PROVINCE, Schema, path_param
from producers.requests.common import CLIENT_ID
from producers.requests.supply import AllocationBody, DiscardBody, PlanBody
from producers.requests.vaccination import (
    AppointmentBody,
    CancellationBody,
    RegistrationBody,
    RegistrationListBody,
)

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


#: ``POST /v1/vaccination/registrations``: one person, or an institution's list.
REGISTRATIONS: Schema = {
    "oneOf": [body_schema(RegistrationBody), body_schema(RegistrationListBody)]
}
#: ``POST /v1/vaccination/appointments``.
APPOINTMENT = body_schema(AppointmentBody)
#: ``POST /v1/vaccination/appointments/{appointment_id}/cancel``.
CANCELLATION = body_schema(CancellationBody)
APPOINTMENT_ID = path_param("appointment_id", _STR_ID)
#: ``POST /v1/vaccination/allocations``.
ALLOCATION = body_schema(AllocationBody)
#: ``POST /v1/vaccination/discards``.
DISCARD = body_schema(DiscardBody)
#: ``PUT /v1/vaccination/plans/{province}``.
PLAN = body_schema(PlanBody)
PLAN_PROVINCE = path_param("province", PROVINCE)
#: What a plan's 202 names besides its id.
PLAN_ANSWERED: dict[str, Schema] = {"province": PROVINCE}
