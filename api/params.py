"""Query, path and header parameters: one declaration gives the parser and the OpenAPI schema.

Parsers are strict on purpose: what the OpenAPI document calls a ``date`` is exactly
``YYYY-MM-DD``, a ``date-time`` exactly RFC 3339, an integer only digits. Anything the
document rejects, the API rejects (400 ``invalid-parameter``), so the document can be trusted
by clients and by the fuzzer that checks it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Literal

from api.problems import Problem
from covidtech.instants import InstantError, check_year, parse_instant
from domain import reference

__all__ = [
    "AREAS",
    "Param",
    "area_param",
    "date_param",
    "datetime_param",
    "enum_param",
    "id_path",
    "int_param",
    "parse_date",
    "parse_datetime",
    "province_param",
    "text_param",
]

PROVINCE_CODES: tuple[str, ...] = tuple(sorted(reference.PROVINCES))
AREAS: tuple[str, ...] = (reference.NATION, *PROVINCE_CODES)

_DATE = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})")
_DIGITS = re.compile(r"[0-9]{1,9}")

Where = Literal["query", "path", "header"]


class ParamError(ValueError):
    """A parameter value that does not parse."""


def _check_year(year: int) -> None:
    try:
        check_year(year)
    except InstantError as e:
        raise ParamError(str(e)) from e


def parse_date(text: str) -> date:
    """``YYYY-MM-DD`` (RFC 3339 full-date) only, years 1970-2999; raises ParamError."""
    m = _DATE.fullmatch(text)
    if m is None:
        raise ParamError("expected a date like 2021-08-01")
    _check_year(int(m[1]))
    try:
        return date(int(m[1]), int(m[2]), int(m[3]))
    except ValueError as e:
        raise ParamError(f"not a calendar date: {e}") from e


def parse_datetime(text: str) -> datetime:
    """RFC 3339 date-time with a zone (``2021-08-01T10:00:00Z``); an aware UTC datetime
    (``covidtech.instants``, the parser the ingest API uses too)."""
    try:
        return parse_instant(text)
    except InstantError as e:
        raise ParamError(str(e)) from e


@dataclass(frozen=True)
class Param:
    """One parameter: where it is, its OpenAPI schema, and its parser."""

    name: str
    where: Where
    schema: dict[str, Any]
    parse: Callable[[str], Any]
    required: bool = False
    default: Any = None
    description: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def read(self, raw: str | None) -> Any:
        """The parsed value of ``raw`` (None: absent); a 400 problem if it does not parse."""
        if raw is None:
            if self.required:
                raise Problem(
                    "invalid-parameter",
                    f"{self.name} is required",
                    extra={"parameter": self.name},
                )
            return self.default
        try:
            return self.parse(raw)
        except ParamError as e:
            raise Problem(
                "invalid-parameter", f"{self.name}: {e}", extra={"parameter": self.name}
            ) from e

    def openapi(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "in": self.where,
            "required": self.required or self.where == "path",
            "schema": self.schema,
        }
        if self.description:
            out["description"] = self.description
        out.update(self.extra)
        return out


def _choice(values: Sequence[str], what: str) -> Callable[[str], str]:
    allowed = frozenset(values)

    def parse(text: str) -> str:
        if text not in allowed:
            raise ParamError(f"unknown {what} {text!r}")
        return text

    return parse


def province_param(name: str = "province", description: str = "", **kw: Any) -> Param:
    """A province code (GSO two digits)."""
    description = description or "GSO two-digit province code, e.g. 79 (Ho Chi Minh City)."
    return enum_param(name, PROVINCE_CODES, description, what="province code", **kw)


def province_path(description: str = "") -> Param:
    """The ``{province}`` of a path: a province code (GSO two digits)."""
    return Param(
        "province",
        "path",
        {"type": "string", "enum": list(PROVINCE_CODES)},
        _choice(PROVINCE_CODES, "province code"),
        required=True,
        description=description,
    )


def area_param(description: str = "", **kw: Any) -> Param:
    """An area: ``VN`` (the nation) or a province code."""
    description = description or "VN (the nation, MOH only) or a province code."
    return enum_param("area", AREAS, description, what="area", **kw)


def enum_param(
    name: str, values: Sequence[str], description: str = "", what: str = "", **kw: Any
) -> Param:
    """One of ``values`` (``what`` names it in the error: the parameter's name by default);
    a ``default`` goes in the schema too."""
    schema: dict[str, Any] = {"type": "string", "enum": list(values)}
    if kw.get("default") is not None:
        schema["default"] = kw["default"]
    return Param(
        name,
        "query",
        schema,
        _choice(values, what or name),
        description=description,
        **kw,
    )


def _formatted(
    name: str, fmt: str, parse: Callable[[str], Any], description: str, **kw: Any
) -> Param:
    return Param(
        name, "query", {"type": "string", "format": fmt}, parse, description=description, **kw
    )


def date_param(name: str, description: str = "", **kw: Any) -> Param:
    return _formatted(name, "date", parse_date, description, **kw)


def datetime_param(name: str, description: str = "", **kw: Any) -> Param:
    return _formatted(name, "date-time", parse_datetime, description, **kw)


def int_param(
    name: str, minimum: int, maximum: int, default: int | None, description: str = ""
) -> Param:
    def parse(text: str) -> int:
        if not _DIGITS.fullmatch(text):
            raise ParamError("expected a whole number")
        value = int(text)
        if not minimum <= value <= maximum:
            raise ParamError(f"must be between {minimum} and {maximum}")
        return value

    schema: dict[str, Any] = {"type": "integer", "minimum": minimum, "maximum": maximum}
    if default is not None:
        schema["default"] = default
    return Param(name, "query", schema, parse, default=default, description=description)


def text_param(
    name: str, max_length: int, description: str = "", where: Where = "query", **kw: Any
) -> Param:
    def parse(text: str) -> str:
        if not 1 <= len(text) <= max_length:
            raise ParamError(f"must have 1 to {max_length} characters")
        return text

    return Param(
        name,
        where,
        {"type": "string", "minLength": 1, "maxLength": max_length},
        parse,
        description=description,
        **kw,
    )


def id_path(name: str, description: str = "") -> Param:
    """An id in the path (1-128 characters; an unknown id answers 404)."""
    return text_param(name, 128, description, where="path", required=True)
