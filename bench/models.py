"""Request-model micro-benchmark: the scan bodies of ``bench.ingest`` read three ways.

Issue 14 asks for request models declared once with a library that validates and emits JSON
Schema (pydantic v2 or msgspec), chosen by measurement. This compares, on the bodies
``bench.ingest`` posts (one scan; a batch of 500), per item:

* ``api``: the API's reader as served, ``json`` decode then
  :func:`producers.requests.checkins.parse_scan` (the hand reader until session 9, since then
  the request model ``ScanBody``, so this row now measures the model with its error mapping
  and request object);
* ``pydantic``: ``json`` decode, then a strict pydantic v2 model per item (a batch's items are
  judged one by one, so a bad item must not sink the others);
* ``msgspec``: ``json`` decode, then ``msgspec.convert`` into a strict Struct per item; and,
  as its best case, one typed ``msgspec.json.decode`` of the whole body (which gives up the
  per-item verdicts).

Every reader ends with the same domain checks the API needs after the structure (both QR
signatures, through the API's cached verifier, and the scan-time window), so the figures
compare whole reads. It also reports how many of a bad item's field errors each reader names
(the API answers every field error with its code and path: docs/ingest-api.md).

    .venv/bin/python -m bench.models            # about 10 s, one core
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import msgspec
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from covidtech.instants import parse_instant
from covidtech.web.problems import FieldError
from domain.presence import check_scan_time
from domain.qr import QrKind
from producers.requests.checkins import parse_scan
from producers.requests.common import CachedQrSigner, IngestLimits

SECRET = "bench-models-secret-0123456789"
QR = CachedQrSigner(SECRET)
LIMITS = IngestLimits()
NOW = datetime(2021, 8, 2, 3, 0, tzinfo=UTC)

CLIENT_ID = r"^[A-Za-z0-9_-]{8,64}$"
SCOPE_ID = r"^[A-Za-z0-9_-]{1,64}$"
Direction = Literal["IN", "OUT"]
Method = Literal["PERSON_SCANNED_VENUE", "STAFF_SCANNED_PERSON"]

# --------------------------------------------------------------------------- pydantic v2


class PydScan(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    scan_id: Annotated[str, Field(pattern=CLIENT_ID)]
    venue_qr: Annotated[str, Field(min_length=1, max_length=256)]
    person_qr: Annotated[str, Field(min_length=1, max_length=256)]
    scanned_at: Annotated[str, Field(min_length=1, max_length=40), AfterValidator(parse_instant)]
    direction: Direction
    method: Method | None = None
    device_id: Annotated[str, Field(pattern=SCOPE_ID)] | None = None


# --------------------------------------------------------------------------- msgspec


class MsgScan(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    scan_id: Annotated[str, msgspec.Meta(pattern=CLIENT_ID)]
    venue_qr: Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
    person_qr: Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
    scanned_at: Annotated[str, msgspec.Meta(min_length=1, max_length=40)]
    direction: Direction
    method: Method | None = None
    device_id: Annotated[str, msgspec.Meta(pattern=SCOPE_ID)] | None = None


class MsgBatch(msgspec.Struct, forbid_unknown_fields=True):
    scans: Annotated[list[MsgScan], msgspec.Meta(min_length=1, max_length=500)]


# --------------------------------------------------------------------------- readers


def _domain(venue_qr: str, person_qr: str, scanned_at: datetime) -> None:
    """The checks that stay in code after any model: signatures and the time window."""
    venue = QR.parse(venue_qr)
    person = QR.parse(person_qr)
    assert venue.kind is QrKind.VENUE and person.kind is QrKind.PERSON
    check_scan_time(scanned_at, NOW, LIMITS.presence)


def _items(body: Any) -> list[Any]:
    return body["scans"] if isinstance(body, dict) and "scans" in body else [body]


def read_api(raw: bytes) -> int:
    errors: list[FieldError] = []
    n = 0
    for i, item in enumerate(_items(json.loads(raw))):
        if parse_scan(item, f"scans[{i}]", errors, QR, NOW, LIMITS) is not None:
            n += 1
    return n


def read_pydantic(raw: bytes) -> int:
    n = 0
    for item in _items(json.loads(raw)):
        scan = PydScan.model_validate(item)
        _domain(scan.venue_qr, scan.person_qr, scan.scanned_at)  # type: ignore[arg-type]
        n += 1
    return n


def read_msgspec(raw: bytes) -> int:
    n = 0
    for item in _items(json.loads(raw)):
        scan = msgspec.convert(item, MsgScan, strict=True)
        _domain(scan.venue_qr, scan.person_qr, parse_instant(scan.scanned_at))
        n += 1
    return n


def read_msgspec_typed(raw: bytes) -> int:
    """Best case: the whole body decoded into its type at once (no per-item verdicts)."""
    if raw.startswith(b'{"scans"'):
        scans = msgspec.json.decode(raw, type=MsgBatch).scans
    else:
        scans = [msgspec.json.decode(raw, type=MsgScan)]
    for scan in scans:
        _domain(scan.venue_qr, scan.person_qr, parse_instant(scan.scanned_at))
    return len(scans)


READERS: dict[str, Callable[[bytes], int]] = {
    "api (parse_scan)": read_api,
    "pydantic v2": read_pydantic,
    "msgspec convert": read_msgspec,
    "msgspec typed decode": read_msgspec_typed,
}

# --------------------------------------------------------------------------- bodies


def _scan(i: int) -> dict[str, Any]:
    return {
        "scan_id": uuid.uuid4().hex,
        "venue_qr": QR.payload(QrKind.VENUE, "v-bench-1"),
        "person_qr": QR.payload(QrKind.PERSON, f"p-{i % 200:04d}"),
        "scanned_at": NOW.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "direction": "IN" if i % 2 == 0 else "OUT",
    }


def bodies() -> dict[str, tuple[bytes, int]]:
    return {
        "single": (json.dumps(_scan(0)).encode(), 1),
        "batch of 500": (json.dumps({"scans": [_scan(i) for i in range(500)]}).encode(), 500),
    }


#: One item with four field errors: a short scan_id, a number for scanned_at, an unknown
#: direction and an unknown field.
BAD = {
    "scan_id": "short",
    "venue_qr": QR.payload(QrKind.VENUE, "v-bench-1"),
    "person_qr": QR.payload(QrKind.PERSON, "p-0001"),
    "scanned_at": 12,
    "direction": "SIDEWAYS",
    "colour": "red",
}


def errors_reported() -> dict[str, int]:
    api: list[FieldError] = []
    parse_scan(BAD, "", api, QR, NOW, LIMITS)
    try:
        PydScan.model_validate(BAD)
        pyd = 0
    except ValidationError as e:
        pyd = e.error_count()
    try:
        msgspec.convert(BAD, MsgScan, strict=True)
        msg = 0
    except msgspec.ValidationError:
        msg = 1  # msgspec raises on the first error it meets
    return {"api (parse_scan)": len(api), "pydantic v2": pyd, "msgspec convert": msg}


def _rounds(shapes: dict[str, tuple[bytes, int]], seconds: float) -> dict[tuple[str, str], float]:
    """Median µs per item of each reader on each body. Rounds interleave the readers, so a
    neighbour's load on this shared machine falls on all of them alike."""
    times: dict[tuple[str, str], list[float]] = {(r, s): [] for r in READERS for s in shapes}
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(next(iter(times.values()))) < 5:
        for shape, (raw, items) in shapes.items():
            reps = max(1, 1000 // items)
            for name, read in READERS.items():
                t0 = time.perf_counter()
                for _ in range(reps):
                    assert read(raw) == items
                times[name, shape].append((time.perf_counter() - t0) / (reps * items) * 1e6)
    return {key: statistics.median(values) for key, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="in all")
    args = parser.parse_args()
    print(f"pydantic {__import__('pydantic').VERSION}, msgspec {msgspec.__version__}")
    print("µs per scan (json decode + structure + QR signatures + time window), median\n")
    shapes = bodies()
    print(f"{'reader':<24}" + "".join(f"{name:>16}" for name in shapes))
    figures = _rounds(shapes, args.seconds)
    for name in READERS:
        print(f"{name:<24}" + "".join(f"{figures[name, shape]:>16.1f}" for shape in shapes))
    print("\nfield errors named for an item with 4 bad fields:")
    for name, count in errors_reported().items():
        print(f"  {name:<22} {count}")


if __name__ == "__main__":
    main()
