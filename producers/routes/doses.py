"""``POST /v1/doses``: doses given at a vaccination site, one or a batch of up to 500."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from covidtech.tokens import ScopeKind
from producers.events import Outgoing, dose_administered
from producers.problems import Problem, validation_problem
from producers.requests import DoseRequest, batch_items, parse_dose
from producers.routes.common import (
    BatchItem,
    batch_response,
    raw_id,
    service,
    settle,
    single_response,
)
from producers.service import fingerprint, read_json, require_any, require_province, scoped_id
from producers.validation import FieldError, field_path

ROUTE = "/v1/doses"


async def record_doses(request: Request) -> Response:
    """Scope ``site:<id>@<province>`` of each dose's ``residence_province``; idempotent by
    ``dose_id`` (the event id).

    Single dose: 202 (200 ``duplicate``) or a problem. Batch ``{"doses": [...]}``: 200 with a
    result per item, like scans.
    """
    svc = service(request)
    claims = svc.authenticate(request)
    require_any(claims, ScopeKind.SITE)
    body = await read_json(request, svc.config.max_body_bytes)
    now = svc.now()
    is_batch = isinstance(body, dict) and "doses" in body
    raw_items: list[tuple[str, Any]] | None
    if is_batch:
        envelope_errors: list[FieldError] = []
        raw_items = batch_items(body, "doses", svc.limits.max_batch, envelope_errors)
        if raw_items is None:
            raise validation_problem(envelope_errors)
    else:
        raw_items = [("", body)]

    items: list[BatchItem] = []
    writes: list[tuple[str, bytes, Outgoing, Callable[[], Problem]]] = []
    written: list[BatchItem] = []
    for index, (path, raw) in enumerate(raw_items):
        item = BatchItem(index, raw_id(raw, "dose_id"))
        items.append(item)
        errors: list[FieldError] = []
        dose = parse_dose(raw, path, errors, svc.qr, now, svc.limits)
        if dose is None:
            item.reject(errors)
            continue
        try:
            site_id = scoped_id(claims, ScopeKind.SITE, dose.site_id, field_path(path, "site_id"))
            require_province(
                claims,
                ScopeKind.SITE,
                site_id,
                dose.residence_province,
                field_path(path, "residence_province"),
            )
        except Problem as p:
            item.problem = p
            continue
        out = dose_administered(dose, site_id)
        writes.append(
            (f"doses/{dose.dose_id}", fingerprint(dose, site_id), out, _conflict(dose, path))
        )
        written.append(item)
    for item, result in zip(written, await svc.write_many(writes), strict=True):
        settle(item, result)
    if not is_batch:
        return single_response(items[0], "dose_id", svc.config.retry_after_s)
    return batch_response(svc, ROUTE, items, "dose_id")


def _conflict(dose: DoseRequest, path: str) -> Callable[[], Problem]:
    def conflict() -> Problem:
        return Problem(
            "id-conflict",
            f"dose_id {dose.dose_id} was already used for a different dose",
            errors=[FieldError(field_path(path, "dose_id"), "id-conflict", "already used")],
        )

    return conflict
