"""``POST /v1/scans``: one check-in scan, or a batch of up to 500 from an offline scanner."""

from __future__ import annotations

from datetime import datetime

from starlette.requests import Request
from starlette.responses import Response

from covidtech.tokens import Claims, ScopeKind
from covidtech.web.models import field_path
from covidtech.web.problems import FieldError, Problem
from producers.caches import VenueEntry
from producers.events import checkin_scanned
from producers.openapi.parts import batch_answers, one_or_batch
from producers.requests.checkins import ScanBatchBody, ScanMethod, ScanRequest, parse_scan
from producers.routes.common import (
    BatchItem,
    Write,
    batch_response,
    id_conflict,
    raw_id,
    service,
    settle,
    single_or_batch,
    single_response,
)
from producers.routes.edge import area, claims_of, kinds
from producers.service import fingerprint, scope_problem

ROUTE = "/v1/scans"


def scan_method(claims: Claims, scan: ScanRequest, venue: VenueEntry, path: str) -> ScanMethod:
    """Who scanned whom, and whether this token may say so (docs/security.md, "Citizens").

    A person's app scans the venue's poster with that person's own token (``person:<id>``):
    it places that person only. Venue staff scan the person's QR with a token bound to their
    venue (``venue:<venue id>@<province>``) or as the province's venue administrator
    (``venue-admin:<province>``). An ``app`` token bound to nobody places nobody. Without
    ``method`` in the body the token decides: its own person's scan is a self check-in, else
    a staff scan if the token is staff at this venue.
    """
    staff = claims.has(ScopeKind.VENUE_ADMIN, venue.province) or venue.province in (
        claims.provinces(ScopeKind.VENUE, scan.venue_id)
    )
    method = scan.method
    if method is None:
        own = claims.person is not None and claims.person == scan.person_id
        mobile = claims.has(ScopeKind.PERSON) or claims.has(ScopeKind.APP)
        method = (
            ScanMethod.PERSON_SCANNED_VENUE
            if own or (mobile and not staff)
            else ScanMethod.STAFF_SCANNED_PERSON
        )
    if method is ScanMethod.PERSON_SCANNED_VENUE:
        if claims.person is None:
            raise scope_problem(
                "person:<id>",
                field_path(path, "method"),
                "a self check-in needs the person's own token (person:<id>, from registration "
                "or sign-in); an app token bound to nobody places nobody",
            )
        if claims.person != scan.person_id:
            raise scope_problem(
                f"person:{scan.person_id}",
                field_path(path, "person_qr"),
                "a self check-in places the token's own person only; this QR names another",
            )
    elif not staff:
        raise scope_problem(
            f"venue:{scan.venue_id}@{venue.province}",
            field_path(path, "venue_qr"),
            f"staff scans at this venue need a venue:{scan.venue_id}@{venue.province} or "
            f"venue-admin:{venue.province} scope",
        )
    return method


async def record_scans(request: Request) -> Response:
    """Validate, then write every acceptable scan concurrently; answer per item for batches.

    Single scan: 202 ``{scan_id, status: accepted, person_status}`` (200 ``duplicate`` for a
    known scan_id), or a problem. Batch ``{"scans": [...]}``: 200 ``{accepted, duplicate,
    rejected, results}``, only accepted items written; 503 if any acceptable item could not be
    written. ``person_status`` is the scanned person's check-in colour at ``scanned_at``
    (GREEN, YELLOW, RED, or UNKNOWN when it could not be read in time: producers/status.py),
    without its reason; its facts are read while the scans are written.
    """
    svc = service(request)
    claims = claims_of(request)
    is_batch, raw_items = await single_or_batch(request, ScanBatchBody)
    now = svc.now()

    items: list[BatchItem] = []
    scans: list[ScanRequest | None] = []
    for index, (path, raw) in enumerate(raw_items):
        item = BatchItem(index, raw_id(raw, "scan_id"))
        errors: list[FieldError] = []
        scan = parse_scan(raw, path, errors, svc.qr, now, svc.limits)
        if scan is None:
            item.reject(errors)
        items.append(item)
        scans.append(scan)

    venues = await svc.venues_for({s.venue_id for s in scans if s is not None})
    writes: list[tuple[BatchItem, Write]] = []
    scanned: list[tuple[str, datetime]] = []
    for item, scan, (path, _) in zip(items, scans, raw_items, strict=True):
        if scan is None:
            continue
        venue = venues.get(scan.venue_id)
        if venue is None:
            item.reject(
                [
                    FieldError(
                        field_path(path, "venue_qr"),
                        "unknown-venue",
                        "this venue is not registered",
                    )
                ]
            )
            continue
        try:
            method = scan_method(claims, scan, venue, path)
        except Problem as p:
            item.problem = p
            continue
        out = checkin_scanned(scan, method, venue.province, venue.default_dwell_minutes, now)
        conflict = id_conflict(
            "scan_id",
            path,
            f"scan_id {scan.scan_id} was already used for a different scan",
            "already used for a different scan",
        )
        writes.append(
            (item, (f"checkins/{scan.scan_id}", fingerprint(scan, method), out, conflict))
        )
        scanned.append((scan.person_id, scan.scanned_at))
    statuses = svc.status.begin(scanned)
    results = await svc.write_many([write for _, write in writes])
    for (item, _), result in zip(writes, results, strict=True):
        settle(item, result)
    for (item, _), status in zip(writes, await statuses.result(), strict=True):
        if item.problem is None and item.unavailable is None:
            item.extra["person_status"] = status.value
    if not is_batch:
        return single_response(items[0], "scan_id", svc.config.retry_after_s)
    return batch_response(svc, ROUTE, items, "scan_id")


OPERATIONS = (
    area("scans", kinds(ScopeKind.PERSON, ScopeKind.VENUE, ScopeKind.VENUE_ADMIN)).post(
        ROUTE,
        "record_scans",
        "Record a check-in scan, or a batch of up to 500",
        record_scans,
        who="person:<id> (the person's own app scans the venue: that person only), "
        "venue:<venue id>@<province> or venue-admin:<province> (staff scan the person)",
        body=one_or_batch("Scan", "ScanBatch"),
        answers=batch_answers(
            "Scan written; the person's check-in status.",
            "ScanAccepted",
            "Batch: one result per item; single: already written (duplicate).",
            "ScanBatchResult",
        ),
        errors=(409,),
    ),
)
