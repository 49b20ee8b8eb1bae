"""Avro single-object encoding of covidtech events, with a fingerprint registry.

Wire format (Avro specification, "Single object encoding")::

    +-------+------------------------------------+---------------------------+
    | C3 01 | CRC-64-AVRO fingerprint, 8 bytes   | Avro binary body          |
    |       | little-endian, of the writer       | (schemaless, written with |
    |       | schema's parsing canonical form    | the writer schema)        |
    +-------+------------------------------------+---------------------------+

A reader looks the 8 bytes up in a :class:`Registry` to find the writer schema; no schema
registry service is involved, so every process that reads a topic must hold every writer schema
that was ever used on it. Old writer schemas therefore stay registered forever
(`schemas/avro/history/`), and a new schema must be deployed to readers before writers use it.

Evolution is additive (new fields carry defaults). :meth:`Registry.decode` resolves the writer
schema into the reader's schema (by default the registry's current schema of the same full name),
so bytes written by an older schema come up in the current shape with defaults filled in.

Values:

- ``timestamp-millis`` fields take *aware* :class:`datetime.datetime` values (any zone, stored
  as UTC milliseconds) or ints (milliseconds since the epoch); a naive datetime is refused,
  because nothing says which zone it meant. They are read back as aware UTC datetimes.
- ``date`` fields take :class:`datetime.date` values (or days since the epoch) and are read back
  as :class:`datetime.date`.
- Nullable fields are ``["null", T]`` and take ``None``; fields with a default may be omitted.

This module is pure: it imports only fastavro and the standard library.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Any

from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.read import SchemaResolutionError
from fastavro.schema import SchemaParseException, fingerprint, load_schema
from fastavro.schema import to_parsing_canonical_form as _canonical_form
from fastavro.validation import ValidationError
from fastavro.validation import validate as _validate_datum

__all__ = [
    "HEADER_SIZE",
    "MAGIC",
    "SCHEMA_DIR",
    "CodecError",
    "Event",
    "IncompatibleSchema",
    "InvalidRecord",
    "MalformedEvent",
    "RegisteredSchema",
    "Registry",
    "UnknownSchema",
    "decode",
    "default_registry",
    "encode",
]

MAGIC = b"\xc3\x01"
FINGERPRINT_SIZE = 8
HEADER_SIZE = len(MAGIC) + FINGERPRINT_SIZE

#: Where the current schemas live; older writer schemas are under ``history/``.
SCHEMA_DIR = Path(__file__).parent / "avro"

_TIMESTAMP_TYPES = frozenset({"timestamp-millis", "timestamp-micros"})


class CodecError(Exception):
    """Base class of every error raised by this module."""


class MalformedEvent(CodecError):
    """The bytes are not a single-object encoded event (bad magic, truncated, garbage body)."""


class UnknownSchema(CodecError):
    """No registered schema has this fingerprint or this name."""


class IncompatibleSchema(CodecError):
    """The writer schema cannot be resolved into the requested reader schema."""


class InvalidRecord(CodecError):
    """A record does not match its schema on encode; ``field`` names the offending field."""

    def __init__(self, event_name: str, field: str | None, reason: str) -> None:
        where = f"{event_name}.{field}" if field else event_name
        super().__init__(f"invalid {where}: {reason}")
        self.event_name = event_name
        self.field = field
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Event:
    """A decoded event: the record's full schema name and its fields."""

    name: str
    record: dict[str, Any]


@dataclass(frozen=True, slots=True, eq=False)
class RegisteredSchema:
    """One writer/reader schema, parsed once, with its single-object header precomputed."""

    name: str
    parsed: dict[str, Any]
    canonical_form: str
    fingerprint: bytes
    header: bytes
    timestamp_fields: tuple[str, ...]


def canonical_fingerprint(canonical_form: str) -> bytes:
    """CRC-64-AVRO of a parsing canonical form, as the 8 little-endian bytes of the wire."""
    # fastavro returns the Rabin fingerprint already in little-endian byte order (as Java does).
    return bytes.fromhex(fingerprint(canonical_form, "CRC-64-AVRO"))


class Registry:
    """Known Avro schemas, by fingerprint (writer lookup) and by full name (current version).

    Loading parses each schema and computes its fingerprint once; :meth:`encode` and
    :meth:`decode` reuse the parsed schemas. Not meant to be mutated while other threads use it.
    """

    def __init__(self, schema_dir: Path | None = SCHEMA_DIR, *, validate: bool = True) -> None:
        """Load every ``*.avsc`` record of ``schema_dir`` as current, then ``history/*.avsc``.

        Files directly in ``schema_dir`` are named ``<full name>.avsc`` and may refer to named
        types defined in sibling files (they are expanded before fingerprinting). History files
        must be self-contained. ``schema_dir=None`` gives an empty registry. With
        ``validate=False`` encode skips the full check of each record against its schema.
        """
        self._validate = validate
        self._by_fingerprint: dict[bytes, RegisteredSchema] = {}
        self._current: dict[str, RegisteredSchema] = {}
        if schema_dir is None:
            return
        for path in sorted(schema_dir.glob("*.avsc")):
            try:
                parsed = load_schema(str(path))
            except (SchemaParseException, ValueError, OSError) as e:
                raise CodecError(f"cannot load schema {path.name}: {e}") from e
            if isinstance(parsed, dict) and parsed.get("type") == "record":
                self.register(parsed, current=True)
        history = schema_dir / "history"
        if history.is_dir():
            for path in sorted(history.glob("*.avsc")):
                try:
                    schema = json.loads(path.read_text(encoding="utf-8"))
                except (ValueError, OSError) as e:
                    raise CodecError(f"cannot load schema history/{path.name}: {e}") from e
                self.register(schema)

    def register(self, schema: Mapping[str, Any], *, current: bool = False) -> RegisteredSchema:
        """Add a record schema so that bytes written with it can be decoded.

        The schema becomes the current one for its name (the one :meth:`encode` writes and
        :meth:`decode` reads into) if ``current`` is true or no schema of that name is known yet.
        Registering the same schema twice is harmless.
        """
        try:
            parsed = parse_schema(dict(schema), named_schemas={})
        except (SchemaParseException, ValueError, TypeError, KeyError) as e:
            raise CodecError(f"invalid schema: {e}") from e
        if not isinstance(parsed, dict) or parsed.get("type") != "record":
            raise CodecError("only record schemas can be registered")
        canonical = _canonical_form(parsed)
        fp = canonical_fingerprint(canonical)
        entry = self._by_fingerprint.get(fp)
        if entry is None:
            entry = RegisteredSchema(
                name=parsed["name"],
                parsed=parsed,
                canonical_form=canonical,
                fingerprint=fp,
                header=MAGIC + fp,
                timestamp_fields=_timestamp_fields(parsed),
            )
            self._by_fingerprint[fp] = entry
        if current or entry.name not in self._current:
            self._current[entry.name] = entry
        return entry

    @property
    def names(self) -> tuple[str, ...]:
        """Full names of the records with a current schema, sorted."""
        return tuple(sorted(self._current))

    def schema(self, name: str) -> RegisteredSchema:
        """The current schema of a record, by full name (``covidtech.checkin.CheckInScanned``)."""
        try:
            return self._current[name]
        except KeyError:
            raise UnknownSchema(f"no schema named {name!r}") from None

    def by_fingerprint(self, fp: bytes) -> RegisteredSchema:
        """The schema with this 8-byte fingerprint, current or historical."""
        try:
            return self._by_fingerprint[fp]
        except KeyError:
            raise UnknownSchema(f"no schema with fingerprint {fp.hex()}") from None

    def schemas(self) -> tuple[RegisteredSchema, ...]:
        """Every registered schema, current and historical."""
        return tuple(self._by_fingerprint.values())

    def encode(self, name: str, record: Mapping[str, Any]) -> bytes:
        """Single-object encode ``record`` with the current schema named ``name``.

        Raises :class:`UnknownSchema` for an unknown name and :class:`InvalidRecord` when the
        record does not fit the schema (missing field, wrong type, unknown enum symbol,
        out-of-range int, naive datetime).
        """
        entry = self._current.get(name)
        if entry is None:
            raise UnknownSchema(f"no schema named {name!r}")
        if self._validate:
            _check_record(entry, record)
        out = BytesIO()
        out.write(entry.header)
        try:
            schemaless_writer(out, entry.parsed, record)
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError) as e:
            raise InvalidRecord(name, _field_from_message(str(e)), str(e)) from e
        return out.getvalue()

    def decode(self, data: bytes, reader: str | None = None) -> Event:
        """Decode single-object encoded bytes.

        The writer schema is found by fingerprint. It is resolved into the current schema named
        ``reader`` if given, else into the current schema of the writer's own name (so old bytes
        come up in the current shape); the writer schema is used as is when it is the current
        one. Raises :class:`MalformedEvent`, :class:`UnknownSchema` or
        :class:`IncompatibleSchema`.
        """
        if len(data) < HEADER_SIZE:
            raise MalformedEvent(f"{len(data)} bytes is shorter than the {HEADER_SIZE}-byte header")
        if data[:2] != MAGIC:
            raise MalformedEvent(f"bad magic {bytes(data[:2]).hex()}, expected {MAGIC.hex()}")
        writer = self._by_fingerprint.get(bytes(data[2:HEADER_SIZE]))
        if writer is None:
            raise UnknownSchema(f"no schema with fingerprint {bytes(data[2:HEADER_SIZE]).hex()}")
        target = self._current.get(writer.name, writer) if reader is None else self.schema(reader)
        buf = BytesIO(data)
        buf.seek(HEADER_SIZE)
        try:
            record = schemaless_reader(
                buf, writer.parsed, None if target is writer else target.parsed
            )
        except SchemaResolutionError as e:
            raise IncompatibleSchema(f"cannot read {writer.name} as {target.name}: {e}") from e
        except Exception as e:
            # Garbage bodies surface as many exception types (EOFError, IndexError,
            # UnicodeDecodeError, ValueError, ...): all of them mean the bytes are bad.
            raise MalformedEvent(f"undecodable {writer.name} body: {e!r}") from e
        if buf.tell() != len(data):
            raise MalformedEvent(f"{len(data) - buf.tell()} trailing bytes after the {writer.name}")
        if not isinstance(record, dict):
            raise MalformedEvent(f"{writer.name} body did not decode to a record")
        return Event(target.name, record)


@functools.cache
def default_registry() -> Registry:
    """The registry of the packaged schemas, loaded once per process."""
    return Registry()


def encode(name: str, record: Mapping[str, Any]) -> bytes:
    """:meth:`Registry.encode` on the :func:`default_registry`."""
    return default_registry().encode(name, record)


def decode(data: bytes, reader: str | None = None) -> Event:
    """:meth:`Registry.decode` on the :func:`default_registry`."""
    return default_registry().decode(data, reader)


def _timestamp_fields(parsed: Mapping[str, Any]) -> tuple[str, ...]:
    """Top-level fields holding a timestamp (possibly nullable), checked for naive datetimes."""

    def is_timestamp(field_type: Any) -> bool:
        if isinstance(field_type, list):
            return any(is_timestamp(t) for t in field_type)
        return isinstance(field_type, dict) and field_type.get("logicalType") in _TIMESTAMP_TYPES

    return tuple(f["name"] for f in parsed["fields"] if is_timestamp(f["type"]))


def _check_record(entry: RegisteredSchema, record: Mapping[str, Any]) -> None:
    if not isinstance(record, Mapping):
        raise InvalidRecord(entry.name, None, f"expected a mapping, got {type(record).__name__}")
    for name in entry.timestamp_fields:
        value = record.get(name)
        if isinstance(value, dt.datetime) and value.tzinfo is None:
            raise InvalidRecord(entry.name, name, "naive datetime; give an aware (UTC) datetime")
    # The boolean check is about three times faster; explain only what failed.
    if _validate_datum(record, entry.parsed, raise_errors=False):
        return
    try:
        _validate_datum(record, entry.parsed, raise_errors=True)
    except ValidationError as e:
        first = e.errors[0] if e.errors else None
        if first is None:
            raise InvalidRecord(entry.name, None, str(e)) from e
        path = first.field or ""
        field = path.rsplit(".", 1)[-1] or None
        raise InvalidRecord(
            entry.name,
            field,
            f"{path or 'record'} is {_short_repr(first.datum)} of type "
            f"{type(first.datum).__name__}, expected {_describe(first.schema)}",
        ) from e
    raise InvalidRecord(entry.name, None, "does not match the schema")


def _field_from_message(message: str) -> str | None:
    # fastavro's writer ends most messages with "on field <name>".
    marker = " on field "
    if marker in message:
        return message.rsplit(marker, 1)[1].strip() or None
    if message.startswith("no value and no default for "):
        return message.removeprefix("no value and no default for ").strip() or None
    return None


def _short_repr(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _describe(schema: Any) -> str:
    """A short human name for a parsed schema (the full one can be pages long)."""
    if isinstance(schema, list):
        return " | ".join(_describe(s) for s in schema)
    if isinstance(schema, dict):
        kind = schema.get("type")
        if kind == "array":
            return f"array<{_describe(schema.get('items'))}>"
        if kind == "map":
            return f"map<{_describe(schema.get('values'))}>"
        if kind == "enum":
            return f"enum {schema.get('name')} {list(schema.get('symbols', []))}"
        if "name" in schema:
            return f"{kind} {schema['name']}"
        logical = schema.get("logicalType")
        return f"{kind} ({logical})" if logical else str(kind)
    return str(schema)
