"""A small, strict reader of JSON request bodies that collects field errors with their paths.

Request bodies are decoded with the standard ``json`` module and then read field by field with
:class:`Fields`. Each read checks the JSON type (``true`` is not an integer, ``1.0`` is not an
integer, ``null`` is not a string), the shape (length, pattern, range, enum symbol) and records a
:class:`FieldError` naming the field by its path (``scans[3].venue_qr``) instead of raising, so
one response lists every problem of a body. Fields a body has but the reader never asked for are
errors too (``unknown-field``): a typo such as ``symptom_onest`` must not silently drop data.

Pure: no I/O, no framework import. ``producers/problems.py`` turns errors into RFC 9457 bodies.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from datetime import date, datetime
from enum import StrEnum
from typing import Any, TypeVar

from covidtech.instants import parse_instant
from covidtech.web.problems import FieldError

__all__ = [
    "FieldError",
    "Fields",
    "ValidationFailed",
    "field_path",
    "parse_day",
    "parse_timestamp",
]

E = TypeVar("E", bound=StrEnum)
T = TypeVar("T")
V = TypeVar("V", str, int, bool, list[Any])

#: RFC 3339 date-time with a mandatory offset (``Z`` or ``+07:00``), optional fraction.
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


class ValidationFailed(Exception):
    """A body with at least one field error (the API answers 422)."""

    def __init__(self, errors: Sequence[FieldError]) -> None:
        if not errors:
            raise ValueError("ValidationFailed needs at least one error")
        super().__init__("; ".join(f"{e.field}: {e.message}" for e in errors))
        self.errors: tuple[FieldError, ...] = tuple(errors)


def field_path(parent: str, name: str | int) -> str:
    """``field_path("scans", 3)`` -> ``scans[3]``; ``field_path("", "x")`` -> ``x``."""
    if isinstance(name, int):
        return f"{parent}[{name}]"
    return f"{parent}.{name}" if parent else name


def parse_timestamp(text: str) -> datetime:
    """An RFC 3339 date-time with an explicit offset, years 1970-2999, as an aware UTC
    datetime (``covidtech.instants``, the read API's parser too). Raises ``ValueError``: a
    time without an offset has no instant (DESIGN: stored times are UTC), so it is refused
    rather than guessed."""
    return parse_instant(text)


def parse_day(text: str) -> date:
    """An ISO calendar date ``YYYY-MM-DD``; raises ``ValueError``."""
    if not _DAY.fullmatch(text):
        raise ValueError("must be a date like 2021-08-01")
    return date.fromisoformat(text)


def _type_name(value: object) -> str:
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


class Fields:
    """Reads the fields of one JSON object, collecting errors into a shared list.

    Every getter returns the value, or ``None`` when the field is absent (and optional) or
    invalid (an error was recorded). Call :meth:`finish` after the last read to report fields
    that were not expected.
    """

    __slots__ = ("_data", "_read", "errors", "path")

    def __init__(self, data: dict[str, Any], path: str, errors: list[FieldError]) -> None:
        self._data = data
        self._read: set[str] = set()
        self.path = path
        self.errors = errors

    @classmethod
    def of(cls, value: object, path: str, errors: list[FieldError]) -> Fields | None:
        """A reader for ``value`` if it is a JSON object; else record an error and return None."""
        if not isinstance(value, dict):
            errors.append(
                FieldError(
                    path or "body", "wrong-type", f"must be an object, not {_type_name(value)}"
                )
            )
            return None
        return cls(value, path, errors)

    def has(self, name: str) -> bool:
        """Whether the body has the field (even ``null``)."""
        return name in self._data

    def error(self, name: str | int, code: str, message: str) -> None:
        """Record an error about a field of this object."""
        self.errors.append(FieldError(self.at(name), code, message))

    def at(self, name: str | int) -> str:
        """The path of a field of this object."""
        return field_path(self.path, name) if self.path or isinstance(name, int) else name

    def _get(self, name: str, required: bool, kind: type[V], expected: str) -> V | None:
        """The field's value if it is a ``kind`` (a ``bool`` is no ``int``), else None: a
        missing required field, or one of another type (``expected`` names the type), is an
        error; a missing optional one is not."""
        self._read.add(name)
        value = self._data.get(name)
        if value is None:
            if required:
                present = name in self._data
                self.error(name, "missing", "must not be null" if present else "is required")
            return None
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            self.error(name, "wrong-type", f"must be {expected}, not {_type_name(value)}")
            return None
        return value

    def string(
        self,
        name: str,
        *,
        required: bool = True,
        max_length: int = 200,
        min_length: int = 1,
        pattern: re.Pattern[str] | None = None,
        pattern_hint: str = "",
    ) -> str | None:
        """A string of ``min_length..max_length`` characters, matching ``pattern`` if given."""
        value = self._get(name, required, str, "a string")
        if value is None:
            return None
        if not min_length <= len(value) <= max_length:
            self.error(name, "invalid-value", f"must have {min_length} to {max_length} characters")
            return None
        if pattern is not None and not pattern.fullmatch(value):
            self.error(name, "invalid-value", pattern_hint or f"must match {pattern.pattern}")
            return None
        return value

    def text(self, name: str, *, required: bool = True, max_length: int = 200) -> str | None:
        """Human text: stripped, non-empty, without control characters."""
        value = self.string(name, required=required, max_length=max_length)
        if value is None:
            return None
        stripped = value.strip()
        if not stripped:
            self.error(name, "invalid-value", "must not be blank")
            return None
        if any(ord(c) < 32 or 0x7F <= ord(c) < 0xA0 for c in stripped):
            self.error(name, "invalid-value", "must not contain control characters")
            return None
        return stripped

    def integer(
        self, name: str, *, required: bool = True, minimum: int, maximum: int
    ) -> int | None:
        """A JSON integer within ``minimum..maximum`` (booleans and ``1.5`` are refused)."""
        value = self._get(name, required, int, "an integer")
        if value is None:
            return None
        if not minimum <= value <= maximum:
            self.error(name, "out-of-range", f"must be between {minimum} and {maximum}")
            return None
        return value

    def boolean(self, name: str, *, required: bool = True) -> bool | None:
        """A JSON ``true`` or ``false``."""
        return self._get(name, required, bool, "true or false")

    def choice(self, name: str, enum: type[E], *, required: bool = True) -> E | None:
        """One of the symbols of ``enum``, exactly (no case folding: these are contract values)."""
        value = self._get(name, required, str, "a string")
        if value is None:
            return None
        try:
            return enum(value)
        except ValueError:
            symbols = ", ".join(e.value for e in enum)
            self.error(name, "unknown-enum", f"must be one of {symbols}")
            return None

    def timestamp(self, name: str, *, required: bool = True) -> datetime | None:
        """An RFC 3339 date-time with an offset, as aware UTC."""
        return self._parsed(name, required, 40, parse_timestamp)

    def day(self, name: str, *, required: bool = True) -> date | None:
        """A calendar date ``YYYY-MM-DD``."""
        return self._parsed(name, required, 10, parse_day)

    def _parsed(
        self, name: str, required: bool, max_length: int, parse: Callable[[str], T]
    ) -> T | None:
        """A string of at most ``max_length`` characters read by ``parse``, whose
        ``ValueError`` is the field's error."""
        value = self.string(name, required=required, max_length=max_length)
        if value is None:
            return None
        try:
            return parse(value)
        except ValueError as e:
            self.error(name, "invalid-value", str(e))
            return None

    def array(
        self, name: str, *, required: bool = True, min_items: int = 0, max_items: int
    ) -> list[tuple[str, Any]] | None:
        """The items of an array with their paths, if it has ``min_items..max_items`` items."""
        value = self._get(name, required, list, "an array")
        if value is None:
            return None
        if len(value) > max_items:
            self.error(name, "too-many-items", f"must have at most {max_items} items")
            return None
        if len(value) < min_items:
            self.error(name, "too-few-items", f"must have at least {min_items} item(s)")
            return None
        base = self.at(name)
        return [(field_path(base, i), item) for i, item in enumerate(value)]

    def ignore(self, name: str) -> None:
        """Mark a field as read without checking it (another error already covers it)."""
        self._read.add(name)

    def unknown(self) -> Iterator[str]:
        """Names of fields present in the body that no getter asked for."""
        return (k for k in self._data if k not in self._read)

    def finish(self) -> None:
        """Record an ``unknown-field`` error for every field that was not read."""
        for name in sorted(self.unknown()):
            self.error(name, "unknown-field", "is not a field of this request")
