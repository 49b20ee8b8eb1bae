"""Building blocks of the ingest API's OpenAPI document: shared schemas, request objects, the
problem responses, parameters and answers that the route declarations
(``producers/routes/<area>.py`` ``OPERATIONS``) name."""

from __future__ import annotations

from typing import Any

__all__ = [
    "IDEMPOTENCY_KEY",
    "PROVINCE",
    "WRITE_ERRORS",
    "Schema",
    "batch_answers",
    "created",
    "id_schema",
    "json_content",
    "one_or_batch",
    "or_null",
    "path_param",
    "problem_responses",
    "ref",
    "registered",
    "written",
]

Schema = dict[str, Any]

PROVINCE: Schema = {
    "type": "string",
    "pattern": "^[0-9]{2}$",
    "description": "GSO two-digit province code (63 provinces, 2021), e.g. 01 = Ha Noi.",
}


#: How a batch's items are judged (a JSON schema cannot say it).


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def id_schema(pattern: str, description: str) -> Schema:
    return {"type": "string", "pattern": f"^{pattern}$", "description": description}


def or_null(schema: Schema) -> Schema:
    if {"type": "null"} in schema.get("anyOf", ()):
        return schema
    return {"anyOf": [schema, {"type": "null"}]}


def problem_responses(*statuses: int) -> dict[str, Any]:
    problem = {"application/problem+json": {"schema": ref("Problem")}}
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


#: The problems every write (a route with a request body) may answer.
WRITE_ERRORS = (400, 401, 403, 413, 415, 422, 503)


def one_or_batch(single: str, batch: str) -> Schema:
    """A body that is one item or a batch of them (named component schemas)."""
    return {"oneOf": [ref(single), ref(batch)]}


def path_param(name: str, schema: Schema) -> Schema:
    return {"name": name, "in": "path", "required": True, "schema": schema}


IDEMPOTENCY_KEY: Schema = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "schema": {"type": "string", "pattern": "^[A-Za-z0-9_.:-]{1,128}$"},
    "description": "A retry with the same key returns the same resource (per instance).",
}


def json_content(description: str, schema: Schema) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def written(again: str = "Already written.", schema: Schema | None = None) -> dict[str, Any]:
    """The answers of a write: 202 written, 200 ``again`` (a duplicate); both an ``Accepted``
    unless ``schema`` says otherwise."""
    body = schema or ref("Accepted")
    return {"202": json_content("Written.", body), "200": json_content(again, body)}


def created(first: str, again: str, name: str) -> dict[str, Any]:
    """The answers of a write that creates: 201 ``first``, 200 ``again`` (the same request
    before); both a ``name`` component."""
    return {"201": json_content(first, ref(name)), "200": json_content(again, ref(name))}


def registered(what: str, name: str) -> dict[str, Any]:
    """The answers of a registration under an Idempotency-Key: 201, or 200 the ``what``
    registered before under the key; both a ``name`` component."""
    return created("Registered.", f"The {what} before under this Idempotency-Key.", name)


def batch_answers(written: str, single: str, results: str, batch: str) -> dict[str, Any]:
    """The answers of a route taking one item or a batch: 202 ``written`` (a ``single``
    component), 200 ``results`` (a ``batch`` component, or a ``single`` already written)."""
    return {
        "202": json_content(written, ref(single)),
        "200": json_content(results, {"oneOf": [ref(batch), ref(single)]}),
    }
