"""Helpers shared by the routes: the service from the lifespan state, responses, batches."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from producers.idempotency import Outcome
from producers.ports import BrokerUnavailable
from producers.problems import Problem, validation_problem
from producers.service import IngestService
from producers.validation import FieldError

__all__ = ["BatchItem", "batch_response", "json_response", "service", "single_response"]


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
