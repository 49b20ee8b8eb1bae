"""Request bodies declared once: pydantic v2 models that validate a body and give its JSON Schema
(the OpenAPI document's ``components.schemas``), with the API's own error codes.

A body model derives from :class:`RequestBody` (strict JSON types, unknown fields refused,
frozen) and declares each field with a Python type and its :class:`Rules`: ``scan_id:
Annotated[str, client_id()]``, ``province: Annotated[str, province()]``, ``scanned_at:
Annotated[datetime, timestamp()]``, :func:`signed_qr`, :func:`choice` and the like. Each rule
states its limits once, for validation and for the schema alike. :func:`read` validates one JSON
value against a model and turns pydantic's errors into
:class:`~covidtech.web.problems.FieldError` (path, stable code, message): every field error of a
body, in field order, the codes of ``docs/ingest-api.md`` (``missing``, ``wrong-type``,
``invalid-value``, ``out-of-range``, ``unknown-enum``, ``unknown-field``, ``too-few-items``,
``too-many-items``, and a type's own code such as ``unknown-province`` or ``forged-qr``).

What depends on the deployment (a QR signer, the clock, the domain rules) reaches the validators
through pydantic's validation context (:class:`Context`). Checks across fields or items are the
model's validators too: one raises :func:`invalid_at` to name the fields it faults
(``members[1].person_qr``). The choice of pydantic over msgspec and the hand reader is measured
by ``bench.models`` (docs/design.md, "Request models").
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from enum import Enum
from typing import Annotated, Any, TypeVar

from annotated_types import GroupedMetadata
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    create_model,
)
from pydantic_core import PydanticCustomError

from covidtech.instants import parse_instant
from covidtech.web.problems import FieldError
from domain.qr import ForgedQr, MalformedQr, QrKind, QrSigner
from domain.reference import is_province

__all__ = [
    "CLIENT_ID",
    "CLIENT_ID_HINT",
    "FORGED_QR",
    "PER_ITEM",
    "Context",
    "Loc",
    "RequestBody",
    "Rules",
    "batch_body",
    "body_schema",
    "choice",
    "client_id",
    "context_of",
    "day",
    "faults_of",
    "field_errors",
    "field_path",
    "invalid",
    "invalid_at",
    "matching",
    "province",
    "read",
    "read_batch",
    "signed_qr",
    "text",
    "timestamp",
    "type_name",
]

M = TypeVar("M", bound=BaseModel)


class RequestBody(BaseModel):
    """A request body: JSON types exactly (``true`` is no integer, ``1.0`` no integer, a
    number no string), no field the model does not declare (a typo such as
    ``symptom_onest`` must not drop data silently), immutable once read."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, hide_input_in_errors=True)


@dataclass(frozen=True, slots=True)
class Context:
    """What the validators of a body may need from the deployment: the QR signer, the
    server's clock at the request, the area's limits (``IngestLimits`` and the like)."""

    qr: QrSigner | None = None
    now: datetime | None = None
    limits: Any = None


def context_of(info: ValidationInfo) -> Context:
    """The :class:`Context` a body is read with (:func:`read` always gives one)."""
    context = info.context
    assert isinstance(context, Context), "read the body with covidtech.web.models.read"
    return context


def invalid(code: str, message: str) -> PydanticCustomError:
    """A field's error with the API's own ``code`` (raise it from a validator)."""
    return PydanticCustomError(code, message)


#: A place in a body, as pydantic names it: ``("members", 1, "person_qr")``.
Loc = tuple[str | int, ...]


def invalid_at(*errors: tuple[Loc, PydanticCustomError]) -> ValidationError:
    """Errors below the validated value, each at its place, for a check across fields or
    items (raise it from a validator; pydantic puts the value's own place in front):
    ``raise invalid_at(((1, "person_qr"), invalid("duplicate-member", "...")))``."""
    return ValidationError.from_exception_data(
        "body", [{"type": error, "loc": loc, "input": None} for loc, error in errors]
    )


def faults_of(error: ValidationError) -> list[tuple[Loc, PydanticCustomError]]:
    """The errors of ``error`` as :func:`invalid_at` takes them (a wrap validator raising
    them again with its own)."""
    return [
        (tuple(e["loc"]), PydanticCustomError(e["type"], e["msg"], e.get("ctx")))
        for e in error.errors(include_url=False, include_input=False)
    ]


# --------------------------------------------------------------------------- field types


class Rules(GroupedMetadata):
    """A field type's validation and documentation, as one ``Annotated`` argument:
    ``scan_id: Annotated[str, client_id()]``."""

    def __init__(self, *items: Any) -> None:
        self._items = items

    def __iter__(self) -> Iterator[Any]:
        return iter(self._items)


def _string(value: object) -> str:
    """``value`` if it is a string; the wrong-type error (or null's) otherwise."""
    if isinstance(value, str):
        return value
    if value is None:
        raise invalid("missing", "must not be null")
    raise invalid("wrong-type", f"must be a string, not {type_name(value)}")


def matching(pattern: re.Pattern[str], hint: str, max_length: int = 64) -> Rules:
    """A string matching ``pattern`` whole; ``hint`` is the error's message."""

    def check(value: str) -> str:
        if not pattern.fullmatch(value):
            raise invalid("invalid-value", hint)
        return value

    return Rules(
        Field(max_length=max_length),
        AfterValidator(check),
        WithJsonSchema({"type": "string", "pattern": f"^{pattern.pattern}$"}),
    )


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _text(value: str) -> str:
    stripped = value.strip()
    if not stripped:
        raise invalid("invalid-value", "must not be blank")
    if _CONTROL.search(stripped):
        raise invalid("invalid-value", "must not contain control characters")
    return stripped


def text(max_length: int = 200) -> Rules:
    """Human text: 1..``max_length`` characters, stripped, not blank, no control
    characters."""
    return Rules(
        Field(min_length=1, max_length=max_length),
        AfterValidator(_text),
        WithJsonSchema(
            {
                "type": "string",
                "minLength": 1,
                "maxLength": max_length,
                "description": "Human text: leading and trailing white space is stripped; what "
                "remains must not be blank nor contain control characters (422).",
            }
        ),
    )


def _province(code: str) -> str:
    if not is_province(code):
        raise invalid("unknown-province", "must be a GSO two-digit province code, e.g. 01")
    return code


def province() -> Rules:
    """A GSO two-digit province code of the reference data."""
    return Rules(
        Field(max_length=2),
        AfterValidator(_province),
        WithJsonSchema(
            {
                "type": "string",
                "pattern": "^[0-9]{2}$",
                "description": "GSO two-digit province code (63 provinces, 2021), "
                "e.g. 01 = Ha Noi.",
            }
        ),
    )


def _instant(value: object) -> datetime:
    text = _string(value)
    if not 1 <= len(text) <= 40:
        raise invalid("invalid-value", "must have 1 to 40 characters")
    try:
        return parse_instant(text)
    except ValueError as e:
        raise invalid("invalid-value", str(e)) from None


def timestamp() -> Rules:
    """An RFC 3339 date-time with an offset (``Z`` or ``+07:00``), read as an aware UTC
    datetime (``covidtech.instants``): a time without an offset names no instant."""
    return Rules(
        PlainValidator(_instant), WithJsonSchema({"type": "string", "format": "date-time"})
    )


_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


def _day(value: object) -> date:
    text = _string(value)
    if _DAY.fullmatch(text):
        try:
            return date.fromisoformat(text)
        except ValueError:
            pass
    raise invalid("invalid-value", "must be a date like 2021-08-01")


def day() -> Rules:
    """A calendar date ``YYYY-MM-DD``."""
    return Rules(PlainValidator(_day), WithJsonSchema({"type": "string", "format": "date"}))


#: Client-generated ids (scan_id, dose_id, declaration_id): UUIDs, ULIDs and the like.
CLIENT_ID = re.compile(r"[A-Za-z0-9_-]{8,64}")
CLIENT_ID_HINT = "must be 8-64 letters, digits, '_' or '-' (a UUID is fine)"


def client_id() -> Rules:
    """A client-generated id (the idempotency key of a write)."""
    return matching(CLIENT_ID, CLIENT_ID_HINT)


#: How the API words a QR code's errors by default.
FORGED_QR = "the QR code's signature does not match (forged or altered)"


def signed_qr(kind: QrKind, *, forged: str = FORGED_QR, wrong_kind: str | None = None) -> Rules:
    """A signed QR payload of ``kind``, read as the id it names (the context's signer checks
    the signature)."""

    def subject(payload: str, info: ValidationInfo) -> str:
        qr = context_of(info).qr
        assert qr is not None, "no QR signer given"
        try:
            parsed = qr.parse(payload)
        except ForgedQr:
            raise invalid("forged-qr", forged) from None
        except MalformedQr as e:
            raise invalid("malformed-qr", f"not a covidtech QR code: {e}") from None
        if parsed.kind is not kind:
            raise invalid(
                "wrong-qr-kind",
                wrong_kind or f"must be a {kind.value} QR code, not a {parsed.kind.value} one",
            )
        return parsed.id

    return Rules(
        Field(min_length=1, max_length=256),
        AfterValidator(subject),
        WithJsonSchema({"type": "string", "maxLength": 256}),
    )


def choice(enum: type[Enum]) -> Rules:
    """One of the values of ``enum``, exactly (contract values: no case folding), read as
    the member: ``direction: Annotated[Direction, choice(Direction)]``."""

    def member(value: object) -> Enum:
        symbol = _string(value)  # its wrong-type error is no ValueError of the enum's
        try:
            return enum(symbol)
        except ValueError:
            symbols = ", ".join(str(e.value) for e in enum)
            raise invalid("unknown-enum", f"must be one of {symbols}") from None

    return Rules(PlainValidator(member), WithJsonSchema({"enum": [e.value for e in enum]}))


# --------------------------------------------------------------------------- reading


#: What a batch promises its client (the envelope's description).
PER_ITEM = (
    "Items are validated one by one: an invalid item is rejected in the results and the "
    "others are written (200); only when every item is rejected is the answer 422."
)


def batch_body(
    key: str, item: str, max_items: int, description: str = PER_ITEM
) -> type[RequestBody]:
    """The model of a batch's envelope ``{"<key>": [...]}``: 1..``max_items`` items, which
    are read one by one afterwards (:func:`read_batch`), so that a bad item does not sink the
    others; its schema refers to the item's component ``item``."""
    items = Annotated[list[Any], Field(min_length=1, max_length=max_items)]
    fields: dict[str, Any] = {key: (items, ...)}
    model: type[RequestBody] = create_model(
        f"{item}Batch", __base__=RequestBody, __doc__=description, **fields
    )
    _BATCH_ITEMS[model] = (key, item)
    return model


#: A batch envelope's field and the component of its items (pydantic would not refer to a
#: component it does not generate itself: :func:`body_schema` writes the reference).
_BATCH_ITEMS: dict[type[BaseModel], tuple[str, str]] = {}


def read_batch(
    model: type[RequestBody], body: object, errors: list[FieldError]
) -> list[tuple[str, Any]] | None:
    """The items of a batch ``body`` read as ``model`` (:func:`batch_body`), each with its
    path (``scans[3]``), or None with the envelope's errors appended to ``errors``."""
    envelope = read(model, body, errors)
    if envelope is None:
        return None
    (key,) = model.model_fields
    return [(field_path(key, i), item) for i, item in enumerate(getattr(envelope, key))]


def read(
    model: type[M],
    value: object,
    errors: list[FieldError],
    path: str = "",
    context: Context | None = None,
) -> M | None:
    """``value`` read as ``model``, or None with its field errors appended to ``errors``
    (paths below ``path``: ``scans[3].venue_qr``)."""
    if not isinstance(value, dict):
        errors.append(
            FieldError(path or "body", "wrong-type", f"must be an object, not {type_name(value)}")
        )
        return None
    try:
        return model.model_validate(value, context=context or _NO_CONTEXT)
    except ValidationError as e:
        errors.extend(field_errors(e, value, path))
        return None


_NO_CONTEXT = Context()

_EXPECTED = {
    "string_type": "a string",
    "int_type": "an integer",
    "bool_type": "true or false",
    "list_type": "an array",
    "dict_type": "an object",
    "model_type": "an object",
    "model_attributes_type": "an object",
}


def field_errors(
    error: ValidationError, body: Mapping[str, Any], path: str = ""
) -> list[FieldError]:
    """pydantic's errors as the API's: a path, a stable code, a message."""
    out: list[FieldError] = []
    for e in error.errors(include_url=False, include_input=False):
        where = path
        for part in e["loc"]:
            if part != "[key]":  # a mapping's key is named by the key itself
                where = field_path(where, part)
        out.append(
            _field_error(
                where or "body", e["type"], e.get("ctx") or {}, e["msg"], _at(body, e["loc"])
            )
        )
    return out


_MISSING = object()


def _at(body: Any, loc: tuple[int | str, ...]) -> Any:
    """The input at ``loc`` (pydantic's errors leave it out: ``hide_input_in_errors``)."""
    value = body
    for part in loc:
        try:
            value = value[part]
        except (KeyError, IndexError, TypeError):
            return _MISSING
    return value


def _field_error(
    where: str, kind: str, ctx: Mapping[str, Any], message: str, given: Any
) -> FieldError:
    if kind == "missing":
        return FieldError(where, "missing", "is required" if given is _MISSING else message)
    if kind == "extra_forbidden":
        return FieldError(where, "unknown-field", "is not a field of this request")
    if kind in _EXPECTED or kind.endswith("_type"):
        if given is None:
            return FieldError(where, "missing", "must not be null")
        expected = _EXPECTED.get(kind, kind.removesuffix("_type"))
        return FieldError(where, "wrong-type", f"must be {expected}, not {type_name(given)}")
    if kind == "string_too_short":
        return FieldError(
            where, "invalid-value", f"must have at least {ctx['min_length']} characters"
        )
    if kind == "string_too_long":
        return FieldError(
            where, "invalid-value", f"must have at most {ctx['max_length']} characters"
        )
    if kind in ("greater_than_equal", "less_than_equal", "greater_than", "less_than"):
        return FieldError(where, "out-of-range", message.replace("Input should be", "must be"))
    if kind == "too_short":
        return FieldError(where, "too-few-items", f"must have at least {ctx['min_length']} item(s)")
    if kind == "too_long":
        return FieldError(where, "too-many-items", f"must have at most {ctx['max_length']} items")
    if kind in ("literal_error", "enum"):
        return FieldError(where, "unknown-enum", message.replace("Input should be", "must be"))
    # a type's own error (``invalid(...)``): the code is the error's type
    return FieldError(where, kind, message)


def field_path(parent: str, name: str | int) -> str:
    """``field_path("scans", 3)`` -> ``scans[3]``; ``field_path("", "x")`` -> ``x``."""
    if isinstance(name, int):
        return f"{parent}[{name}]"
    return f"{parent}.{name}" if parent else name


def type_name(value: object) -> str:
    """The JSON type of a decoded value, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def body_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The JSON Schema (2020-12, OpenAPI 3.1's dialect) of ``model`` for an OpenAPI
    document, without pydantic's generated titles and ``null`` defaults, the models it
    nests written in place (a ``#/$defs/`` reference would not resolve in the document)."""
    schema = model.model_json_schema(mode="validation")
    defs = schema.pop("$defs", {})
    tidy: dict[str, Any] = _tidy(_nested(schema, defs))
    if model in _BATCH_ITEMS:
        key, item = _BATCH_ITEMS[model]
        tidy["properties"][key]["items"] = {"$ref": f"#/components/schemas/{item}"}
    return tidy


def _nested(node: Any, defs: Mapping[str, Any]) -> Any:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            rest = {k: v for k, v in node.items() if k != "$ref"}
            return {**_nested(defs[ref.removeprefix("#/$defs/")], defs), **rest}
        return {k: _nested(v, defs) for k, v in node.items()}
    if isinstance(node, list):
        return [_nested(v, defs) for v in node]
    return node


def _tidy(node: Any) -> Any:
    if isinstance(node, dict):
        return {
            k: _tidy(v)
            for k, v in node.items()
            if not (k == "title" and isinstance(v, str)) and not (k == "default" and v is None)
        }
    if isinstance(node, list):
        return [_tidy(v) for v in node]
    return node
