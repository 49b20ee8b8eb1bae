"""``POST /v1/doses``: doses given at a vaccination site, one or a batch of up to 500."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from covidtech.tokens import ScopeKind
from covidtech.web.models import field_path
from covidtech.web.problems import FieldError, Problem
from producers.events import dose_administered
from producers.openapi.parts import batch_answers, one_or_batch
from producers.requests.vaccination import DoseBatchBody, parse_dose
from producers.routes.common import (
    BatchItem,
    Write,
    id_conflict,
    raw_id,
    service,
    single_or_batch,
    write_batch,
)
from producers.routes.edge import area, claims_of, kinds
from producers.service import fingerprint, require_province, scoped_id

ROUTE = "/v1/doses"


async def record_doses(request: Request) -> Response:
    """Scope ``site:<id>@<province>`` of each dose's ``residence_province``; idempotent by
    ``dose_id`` (the event id).

    Single dose: 202 (200 ``duplicate``) or a problem. Batch ``{"doses": [...]}``: 200 with a
    result per item, like scans.
    """
    svc = service(request)
    claims = claims_of(request)
    is_batch, raw_items = await single_or_batch(request, DoseBatchBody)
    now = svc.now()
    items: list[BatchItem] = []
    writes: list[tuple[BatchItem, Write]] = []
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
        conflict = id_conflict(
            "dose_id",
            path,
            f"dose_id {dose.dose_id} was already used for a different dose",
            "already used",
        )
        writes.append((item, (f"doses/{dose.dose_id}", fingerprint(dose, site_id), out, conflict)))
    return await write_batch(svc, ROUTE, "dose_id", items, writes, is_batch=is_batch)


OPERATIONS = (
    area("doses", kinds(ScopeKind.SITE)).post(
        ROUTE,
        "record_doses",
        "Record a dose, or a batch of up to 500",
        record_doses,
        who="site:<id>@<the dose's residence_province>",
        body=one_or_batch("Dose", "DoseBatch"),
        answers=batch_answers(
            "Dose written.", "Accepted", "Batch results, or a known dose_id.", "BatchResult"
        ),
        errors=(409,),
    ),
)
