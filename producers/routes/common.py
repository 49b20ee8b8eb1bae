"""Helpers shared by the routes: the service from the lifespan state, responses, writes of one
event or of a batch's events, and the 409 of a reused id."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Concatenate, ParamSpec, TypeVar

from starlette.requests import Request
from starlette.responses import Response

from covidtech.web.models import RequestBody, field_path, read_batch
from covidtech.web.problems import FieldError, Problem, validation_problem
from producers.events import Outgoing
from producers.idempotency import Outcome
from producers.ports import BrokerUnavailable, Delivery
from producers.service import IngestService, read_json

__all__ = [
    "BatchItem",
    "Write",
    "accepted",
    "batch_response",
    "id_conflict",
    "json_response",
    "raw_id",
    "reused_id",
    "service",
    "settle",
    "single_or_batch",
    "single_response",
    "write_batch",
    "write_one",
]

#: One event of a batch to write: (idempotency key, content fingerprint, event, its 409).
Write = tuple[str, bytes, Outgoing, Callable[[], Problem]]


P = ParamSpec("P")
T = TypeVar("T")


def service(request: Request) -> IngestService:
    """The instance's service, from the typed lifespan state."""
    svc = request.state.ingest
    assert isinstance(svc, IngestService)
    return svc


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    """A compact JSON response."""
    data = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return Response(data, status_code=status, media_type="application/json", headers=headers)


@dataclass
class BatchItem:
    """The outcome of one item of a batch (or of a single-item request)."""

    index: int
    item_id: str | None
    problem: Problem | None = None
    outcome: Outcome[Any] | None = None
    unavailable: BrokerUnavailable | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def reject(self, errors: Sequence[FieldError]) -> None:
        self.problem = validation_problem(errors)

    @property
    def status(self) -> str:
        if self.problem is not None:
            return "rejected"
        if self.unavailable is not None:
            return "unavailable"
        assert self.outcome is not None
        return "duplicate" if self.outcome.duplicate else "accepted"

    def body(self, id_name: str) -> dict[str, Any]:
        out: dict[str, Any] = {"index": self.index, id_name: self.item_id, "status": self.status}
        if self.problem is not None:
            out["problem"] = self.problem.body()
        out.update(self.extra)
        return out


def settle(item: BatchItem, result: Any) -> None:
    """Record what a write task returned or raised on its item."""
    if isinstance(result, Outcome):
        item.outcome = result
    elif isinstance(result, BrokerUnavailable):
        item.unavailable = result
    elif isinstance(result, Problem):
        item.problem = result
    elif isinstance(result, BaseException):
        raise result
    else:
        raise TypeError(f"unexpected write result {result!r}")


def single_response(item: BatchItem, id_name: str, retry_after: int) -> Response:
    """One item answered alone: 202 accepted, 200 duplicate, or its problem."""
    if item.problem is not None:
        raise item.problem
    if item.unavailable is not None:
        raise item.unavailable
    body = item.body(id_name)
    del body["index"]
    return json_response(200 if item.status == "duplicate" else 202, body)


def batch_response(
    svc: IngestService, route: str, items: Sequence[BatchItem], id_name: str
) -> Response:
    """200 with one result per item; 503 (with the same list) if any item could not be
    written; 422 (with the same list) if every item was rejected, since nothing was done."""
    results = [item.body(id_name) for item in items]
    counts = {s: 0 for s in ("accepted", "duplicate", "rejected", "unavailable")}
    for item in items:
        counts[item.status] += 1
    for outcome, n in counts.items():
        if n:
            svc.metrics.batch_items.labels(route=route, outcome=outcome).inc(n)
    if counts["unavailable"]:
        raise Problem(
            "broker-unavailable",
            f"{counts['unavailable']} item(s) could not be written; retry them with the same ids",
            headers={"Retry-After": str(svc.config.retry_after_s)},
            extra={"results": results},
        )
    summary = {**{k: v for k, v in counts.items() if k != "unavailable"}, "results": results}
    if items and counts["rejected"] == len(items):
        raise Problem(
            "validation-failed",
            f"all {len(items)} item(s) were rejected; see results for each one's errors",
            extra=summary,
        )
    return json_response(200, summary)


def raw_id(value: object, name: str) -> str | None:
    """The client's id of a batch item, echoed back even when the item is invalid."""
    if isinstance(value, dict):
        raw = value.get(name)
        if isinstance(raw, str) and len(raw) <= 64:
            return raw
    return None


async def single_or_batch(
    request: Request, envelope: type[RequestBody]
) -> tuple[bool, list[tuple[str, Any]]]:
    """Whether the request's JSON body (:func:`producers.service.read_json`) is a batch (the
    ``envelope`` model's one field present: ``{"scans": [...]}``), and its items with their
    paths (a single item has the path ``""``); 422 naming the errors of a bad batch
    envelope."""
    body = await read_json(request, service(request).config.max_body_bytes)
    (key,) = envelope.model_fields
    if not (isinstance(body, dict) and key in body):
        return False, [("", body)]
    errors: list[FieldError] = []
    items = read_batch(envelope, body, errors)
    if items is None:
        raise validation_problem(errors)
    return True, items


async def write_batch(
    svc: IngestService,
    route: str,
    id_name: str,
    items: Sequence[BatchItem],
    writes: Sequence[tuple[BatchItem, Write]],
    *,
    is_batch: bool = True,
) -> Response:
    """Write the events of the acceptable ``items`` together, settle each item, and answer:
    one result per item for a batch (:func:`batch_response`), else the single item's own
    answer (:func:`single_response`)."""
    results = await svc.write_many([write for _, write in writes])
    for (item, _), result in zip(writes, results, strict=True):
        settle(item, result)
    if not is_batch:
        return single_response(items[0], id_name, svc.config.retry_after_s)
    return batch_response(svc, route, items, id_name)


def id_conflict(
    id_name: str, path: str, detail: str, message: str | None = None
) -> Callable[[], Problem]:
    """The 409 of an id already used for other content, naming the id's field (under the
    batch item's ``path``); ``message`` (default: ``detail``) is the field error's."""

    def conflict() -> Problem:
        return Problem(
            "id-conflict",
            detail,
            errors=[
                FieldError(
                    field_path(path, id_name), "id-conflict", detail if message is None else message
                )
            ],
        )

    return conflict


def reused_id(id_name: str, value: str, path: str = "") -> Callable[[], Problem]:
    """The vaccination programme's 409: ``<id_name> <value> was already used for different
    content``, in the detail and the field error alike."""
    return id_conflict(id_name, path, f"{id_name} {value} was already used for different content")


async def write_one(
    svc: IngestService,
    key: str | None,
    content: bytes,
    out: Outgoing,
    conflict: Callable[[], Problem],
) -> bool:
    """Write one event once per idempotency ``key`` (None: no deduplication); True when it
    was a duplicate."""

    async def write() -> Delivery:
        return await svc.produce(out)

    outcome = await svc.write_once(key, content, write, conflict=conflict)
    return outcome.duplicate


def accepted(duplicate: bool, body: dict[str, Any]) -> Response:
    """202 ``{..., "status": "accepted"}``, or 200 ``duplicate`` for a repeated write."""
    return json_response(
        200 if duplicate else 202, {**body, "status": "duplicate" if duplicate else "accepted"}
    )


async def read_command(
    request: Request,
    parse: Callable[Concatenate[Any, list[FieldError], P], T | None],
    *args: P.args,
    **kwargs: P.kwargs,
) -> T:
    """The request's JSON body (:func:`producers.service.read_json`) read by ``parse`` into a
    command; 422 naming every offending field if it is not one."""
    body = await read_json(request, service(request).config.max_body_bytes)
    errors: list[FieldError] = []
    command = parse(body, errors, *args, **kwargs)
    if command is None:
        raise validation_problem(errors)
    return command


async def write_accepted(
    svc: IngestService,
    key: str,
    content: bytes,
    out: Outgoing,
    id_name: str,
    id_value: str,
    answered: dict[str, Any] | None = None,
) -> Response:
    """A programme write (:func:`write_one`) of ``out`` once per ``key``: 202 naming its id
    (and ``answered``), 200 ``duplicate``, 409 if the id was used for other content
    (:func:`reused_id`)."""
    duplicate = await write_one(svc, key, content, out, reused_id(id_name, id_value))
    return accepted(duplicate, {id_name: id_value, **(answered or {})})


async def register_once(
    svc: IngestService,
    caller: str,
    key: str | None,
    what: str,
    content: bytes,
    write: Callable[[], Awaitable[T]],
) -> Outcome[T]:
    """A registration of a ``what`` (``write``) once per Idempotency-Key ``key`` of the
    ``caller`` (``<area>/<subject>``; no key: every request is a new one); 409 if the key was
    used for another ``what``."""
    return await svc.write_once(
        f"{caller}/{key}" if key else None,
        content,
        write,
        conflict=lambda: Problem(
            "id-conflict", f"this Idempotency-Key was used for another {what}"
        ),
    )
