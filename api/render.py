"""JSON answers: times as RFC 3339 UTC, caching headers, ETags on aggregates."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

__all__ = [
    "CSV",
    "PERSONAL",
    "aggregate_response",
    "conditional_response",
    "csv_bytes",
    "iso",
    "iso_or_none",
    "json_bytes",
    "json_response",
]

#: Cache-Control of answers holding personal data: never stored by anyone.
PERSONAL = "private, no-store"
#: The media type of the CSV answers.
CSV = "text/csv; charset=utf-8"


def iso(value: datetime | date) -> str:
    """A datetime as RFC 3339 UTC with milliseconds (``...T03:00:00.123Z``); a date as is."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return value.isoformat()


def iso_or_none(value: datetime | date | None) -> str | None:
    return None if value is None else iso(value)


def _default(value: Any) -> Any:
    if isinstance(value, (datetime, date)):
        return iso(value)
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"cannot render {type(value).__name__}")


def json_bytes(data: Any) -> bytes:
    """``data`` as compact UTF-8 JSON (times as :func:`iso`)."""
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"), default=_default).encode()


def csv_bytes(fields: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> bytes:
    """``rows`` as UTF-8 CSV: a header of ``fields``, a line (LF) a row, None an empty cell."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue().encode()


def json_response(
    data: Any,
    *,
    status: int = 200,
    cache_control: str = PERSONAL,
    headers: Mapping[str, str] | None = None,
) -> Response:
    return Response(
        json_bytes(data),
        status_code=status,
        media_type="application/json",
        headers={"Cache-Control": cache_control, **(headers or {})},
    )


def conditional_response(
    request: Request,
    body: bytes,
    media_type: str,
    cache_control: str,
    headers: Mapping[str, str] | None = None,
) -> Response:
    """``body`` with an ETag (its SHA-256), or 304 without it if the request's If-None-Match
    names that ETag (weak or strong)."""
    etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    sent = {"Cache-Control": cache_control, "ETag": etag, **(headers or {})}
    wanted = request.headers.get("if-none-match", "")
    if etag in {t.strip().removeprefix("W/") for t in wanted.split(",")}:
        return Response(status_code=304, headers=sent)
    return Response(body, media_type=media_type, headers=sent)


def aggregate_response(
    request: Request, data: Any, max_age: int, media_type: str = "application/json"
) -> Response:
    """An aggregate (``data`` as JSON, or bytes already of ``media_type``): cacheable by the
    caller for ``max_age`` s, with an ETag (304 if it matches If-None-Match). ``private``: the
    answer depends on the caller's token, so a shared cache must not hand it to someone else."""
    return conditional_response(
        request,
        data if isinstance(data, bytes) else json_bytes(data),
        media_type,
        f"private, max-age={max_age}",
        {"Vary": "Authorization"},
    )
