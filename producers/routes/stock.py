"""``POST /v1/vaccination/allocations`` (the ministry sends doses to a province) and
``POST /v1/vaccination/discards`` (a site reports doses it threw away)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from covidtech.tokens import ScopeKind
from producers.events import doses_discarded, vaccine_allocated
from producers.openapi import vaccination as doc
from producers.requests.supply import parse_allocation, parse_discard
from producers.routes.common import read_command, service, write_accepted
from producers.routes.edge import area, claims_of, kinds
from producers.service import fingerprint, require_province, scoped_id


async def allocate(request: Request) -> Response:
    """Scope ``moh``; idempotent by ``allocation_id``."""
    svc = service(request)
    allocation = await read_command(request, parse_allocation)
    return await write_accepted(
        svc,
        f"allocations/{allocation.allocation_id}",
        fingerprint(allocation),
        vaccine_allocated(allocation, svc.now()),
        "allocation_id",
        allocation.allocation_id,
    )


async def report_discard(request: Request) -> Response:
    """Scope ``site:<id>@<province>`` of the discard's province; idempotent by
    ``discard_id``."""
    svc = service(request)
    claims = claims_of(request)
    discard = await read_command(request, parse_discard, svc.now())
    site_id = scoped_id(claims, ScopeKind.SITE, discard.site_id, "site_id")
    require_province(claims, ScopeKind.SITE, site_id, discard.province, "province")
    return await write_accepted(
        svc,
        f"discards/{discard.discard_id}",
        fingerprint(discard, site_id),
        doses_discarded(discard, site_id),
        "discard_id",
        discard.discard_id,
    )


_AREA = area("vaccination", kinds(ScopeKind.SITE), errors=(409,))

OPERATIONS = (
    _AREA.post(
        "/v1/vaccination/allocations",
        "allocate_doses",
        "Allocate doses of a product to a province",
        allocate,
        scopes=kinds(ScopeKind.MOH),
        who="moh",
        body=doc.ALLOCATION,
        answers=doc.answers("allocation_id"),
    ),
    _AREA.post(
        "/v1/vaccination/discards",
        "report_discard",
        "Report discarded doses",
        report_discard,
        who="site:<id>@<province>",
        body=doc.DISCARD,
        answers=doc.answers("discard_id"),
    ),
)
