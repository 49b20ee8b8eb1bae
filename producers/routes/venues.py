"""``POST /v1/venues`` and the venue posters."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from covidtech.tokens import ScopeKind
from covidtech.web.problems import Problem
from domain.qr import QrKind
from producers.caches import VenueEntry
from producers.events import new_id, venue_registered
from producers.openapi.parts import IDEMPOTENCY_KEY, id_schema, path_param, ref, registered
from producers.requests.checkins import parse_venue
from producers.requests.common import VENUE_ID
from producers.routes.common import json_response, read_command, register_once, service
from producers.routes.edge import Endpoint, IngestOperation, area, claims_of, kinds
from producers.service import fingerprint, scope_problem


async def register_venue(request: Request) -> Response:
    """Register a venue in the province of a ``venue-admin:<province>`` token.

    201 with the new venue id, its signed QR payload and the poster links, once the
    VenueRegistered event is acknowledged. An ``Idempotency-Key`` header makes a retry return
    the same venue instead of registering another.
    """
    svc = service(request)
    claims = claims_of(request)
    key = svc.idempotency_key(request)
    venue = await read_command(request, parse_venue, svc.config.limits)
    if not claims.has(ScopeKind.VENUE_ADMIN, venue.province):
        raise scope_problem(f"venue-admin:{venue.province}", "province")

    async def write() -> str:
        venue_id = new_id("v")
        await svc.produce(venue_registered(venue_id, venue, svc.now()))
        svc.venues.put(
            VenueEntry(
                venue_id,
                venue.name,
                venue.address,
                venue.province,
                venue.district,
                venue.category,
                venue.default_dwell_minutes,
            )
        )
        return venue_id

    outcome = await register_once(
        svc, f"venues/{claims.subject}", key, "venue", fingerprint(venue), write
    )
    venue_id = outcome.value
    location = f"/v1/venues/{venue_id}"
    return json_response(
        200 if outcome.duplicate else 201,
        {
            "venue_id": venue_id,
            "venue_qr": svc.qr.payload(QrKind.VENUE, venue_id),
            "province": venue.province,
            "default_dwell_minutes": venue.default_dwell_minutes,
            "poster_png": f"{location}/poster.png",
            "poster_svg": f"{location}/poster.svg",
        },
        headers={"Location": location},
    )


async def _poster(request: Request, fmt: str) -> Response:
    svc = service(request)
    claims = claims_of(request)
    venue_id = request.path_params["venue_id"]
    venue = await svc.venue(venue_id) if VENUE_ID.fullmatch(venue_id) else None
    if venue is None:
        raise Problem("unknown-venue-id", f"no venue {venue_id[:64]!r}")
    if not claims.has(ScopeKind.VENUE_ADMIN, venue.province):
        raise scope_problem(f"venue-admin:{venue.province}", "venue_id")
    data = await svc.poster(venue, fmt)
    return Response(
        data,
        media_type="image/png" if fmt == "png" else "image/svg+xml",
        headers={
            "Cache-Control": "private, max-age=3600",
            "Content-Disposition": f'inline; filename="{venue_id}.{fmt}"',
        },
    )


async def venue_poster_png(request: Request) -> Response:
    """The venue's printable A4 poster (name, address, QR) as PNG."""
    return await _poster(request, "png")


async def venue_poster_svg(request: Request) -> Response:
    """The venue's printable A4 poster (name, address, QR) as SVG."""
    return await _poster(request, "svg")


_AREA = area("venues", kinds(ScopeKind.VENUE_ADMIN))


def _poster_operation(kind: str, media: str, handler: Endpoint) -> IngestOperation:
    return _AREA.get(
        f"/v1/venues/{{venue_id}}/poster.{kind.lower()}",
        handler.__name__,
        f"The venue's printable A4 poster ({kind})",
        handler,
        who="venue-admin:<the venue's province>",
        parameters=(
            path_param(
                "venue_id",
                id_schema(VENUE_ID.pattern, "Another id is an unknown venue (404)."),
            ),
        ),
        answers={
            "200": {
                "description": "The poster.",
                "content": {media: {"schema": {"type": "string", "format": "binary"}}},
            }
        },
        errors=(401, 403, 404, 503),
    )


OPERATIONS = (
    _AREA.post(
        "/v1/venues",
        "register_venue",
        "Register a venue",
        register_venue,
        who="venue-admin:<province of the venue>",
        body=ref("VenueRequest"),
        answers=registered("venue registered", "VenueCreated"),
        errors=(409,),
        parameters=(IDEMPOTENCY_KEY,),
    ),
    _poster_operation("PNG", "image/png", venue_poster_png),
    _poster_operation("SVG", "image/svg+xml", venue_poster_svg),
)
