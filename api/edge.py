"""The read API's request framework: an operation declared once, and the path of every request.

An :class:`Operation` says everything about a route: method, path template, the scope kinds
that may call it, its parameters, caching, audit, answers and handler. The same declarations
build the Starlette routes (:func:`route`, used by :func:`api.app.create_app`) and the OpenAPI
document (:mod:`api.openapi`), so the document cannot drift from what is served. Each area of
``api/routes/`` declares its own operations, through an :class:`Area` that states once what
they share (tag, scopes, caching...); :func:`api.routes.build_operations` assembles them.

Each request goes through :func:`dispatch`: authenticate (unless public), check the route's
scope kinds (403 before anything is read), parse parameters (400), run the handler; errors are
answered as problems; metrics are recorded by route template. A handler sees the request as a
:class:`Ctx`; the helpers below it are the checks and page positions that several areas share.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from api.auth import Reach, authenticate, reach_of
from api.paging import InvalidPageToken
from api.params import Param, id_path, int_param, text_param
from api.problems import LogUnavailable, Problem, exception_handlers
from api.ratelimit import TokenBuckets
from api.render import aggregate_response
from api.services import Services
from api.stream import EventStreamResponse, InvalidEventId, alert_events, parse_event_id
from covidtech.jsonbody import BodyError, parse_json
from covidtech.tokens import Claims, ScopeKind
from covidtech.web import operations
from covidtech.web.operations import Declaration
from domain import reference
from domain.coverage import NATION
from projections import queries
from projections.access import LOCAL_TZ
from projections.model import Row, StoreUnavailable
from projections.queries import Cursor, Segment

__all__ = [
    "AGGREGATE",
    "AGGREGATE_ERRORS",
    "MAX_BODY_BYTES",
    "PERSONAL_ERRORS",
    "REACH_ERRORS",
    "RESUME_PARAMS",
    "Area",
    "Ctx",
    "Handler",
    "Operation",
    "area_name",
    "check_area",
    "day_range",
    "dispatch",
    "from_ms",
    "invalid_body",
    "json_body",
    "malformed_page",
    "ms",
    "newest_page",
    "page",
    "page_int",
    "page_params",
    "page_str",
    "read_in_reach",
    "route",
]

_HANDLERS: dict[type[Exception], Callable[[Request, Exception], Awaitable[Response]]] = (
    exception_handlers()
)

#: The answers of a route reading one person's (or one sample's) data: 404 when out of reach.
PERSONAL_ERRORS = (400, 401, 403, 404, 503)
#: The answers of an aggregate (ETag: 304 when the caller's copy is current).
AGGREGATE_ERRORS = (304, 400, 401, 403, 503)
#: The answers of a route reading whatever the token reaches (a list, a graph): no 404.
REACH_ERRORS = (400, 401, 403, 503)
#: What an aggregate declares (``**AGGREGATE``): cached, ETag, :data:`AGGREGATE_ERRORS`.
AGGREGATE: Mapping[str, Any] = {"caching": "aggregate", "errors": AGGREGATE_ERRORS}


@dataclass
class Ctx:
    """One request as a handler sees it."""

    request: Request
    services: Services
    op: Operation
    params: dict[str, Any]
    claims: Claims | None = None
    reach: Reach | None = None

    @property
    def now(self) -> datetime:
        return self.services.clock()

    @property
    def today(self) -> date:
        return self.now.astimezone(LOCAL_TZ).date()

    @property
    def client_address(self) -> str | None:
        client = self.request.client
        return client.host if client is not None else None

    def take(self, limiter: TokenBuckets, what: str, key: str | None = None) -> None:
        """429 ``rate-limited`` ("too many ``what``", with Retry-After) unless ``limiter`` lets
        ``key`` (default: the client's address) ask now."""
        wait = limiter.take(key if key is not None else self.client_address or "unknown")
        if wait > 0:
            self.services.metrics.rate_limited.inc()
            raise Problem(
                "rate-limited",
                f"too many {what}; retry later",
                headers={"Retry-After": str(limiter.retry_after(wait))},
            )

    def must_reach(self) -> Reach:
        assert self.reach is not None, "a public route asked for a reach"
        return self.reach

    async def audit(self, subject: str, person_ids: Iterable[str]) -> None:
        """Audit this read of personal data before answering (fail closed)."""
        assert self.claims is not None
        event = self.services.auditor.event(
            self.claims,
            method=self.request.method,
            route=self.op.path,
            subject=subject,
            person_ids=person_ids,
            client_address=self.client_address,
        )
        await self.services.auditor.record(event)

    async def alert_stream(
        self,
        *,
        opened: tuple[str, Iterable[str]],
        wanted: Callable[[Mapping[str, Any]], bool],
        render: Callable[[Mapping[str, Any]], Mapping[str, Any]],
        audit: Callable[[list[Mapping[str, Any]]], Awaitable[None]],
        event: str = "alert",
    ) -> Response:
        """An SSE stream of the alert broadcaster for this request (:mod:`api.stream`): it
        resumes after ``Last-Event-ID``, is audited as ``opened`` (subject, person ids) when it
        opens and by ``audit`` before records leave, and ends once the token is revoked or
        expired (asked every ``stream_recheck_seconds``)."""
        services, claims = self.services, self.claims
        assert claims is not None
        last = self.params["Last-Event-ID"] or self.params["last_event_id"]
        try:
            resume = parse_event_id(last) if last else None
        except InvalidEventId as e:
            raise Problem("invalid-last-event-id", str(e)) from e
        await self.audit(*opened)
        broadcaster = services.broadcaster
        sub = broadcaster.subscribe()

        def refused() -> str | None:
            """Why the stream's token no longer reads, if it does not."""
            if services.revocations.claims_revoked(claims):
                return "token-revoked"
            if services.clock() >= claims.expires_at:
                return "token-expired"
            return None

        events = alert_events(
            broadcaster,
            sub,
            resume=resume,
            wanted=wanted,
            render=render,
            keepalive_s=services.config.sse_keepalive_seconds,
            catchup_timeout_s=services.config.catchup_timeout_seconds,
            on_event=services.metrics.stream_events.inc,
            refused=refused,
            audit=audit,
            recheck_s=services.config.stream_recheck_seconds,
            event=event,
        )
        return EventStreamResponse(
            events,
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
            on_close=lambda: broadcaster.unsubscribe(sub),
        )

    async def aggregate(
        self, key: Hashable, compute: Callable[[], Awaitable[dict[str, Any]]]
    ) -> Response:
        """An aggregate answer: ``compute`` shared through the cache under ``key``, sent with
        an ETag and private caching (:func:`api.render.aggregate_response`)."""
        data = await self.services.cache.get(key, compute)
        return aggregate_response(self.request, data, self.services.config.cache_max_age)

    def page_limit(self) -> int:
        limit = self.params.get("limit")
        return int(limit) if limit is not None else self.services.config.page_size

    def open_page(self, binding: Mapping[str, Any]) -> dict[str, Any] | None:
        token = self.params.get("page_token")
        if token is None:
            return None
        try:
            return self.services.pages.open(token, self.op.op_id, binding)
        except InvalidPageToken as e:
            raise Problem("invalid-page-token", str(e)) from e

    def mint_page(self, binding: Mapping[str, Any], position: Mapping[str, Any]) -> str:
        return self.services.pages.mint(self.op.op_id, binding, position)

    def next_page(
        self, binding: Mapping[str, Any], nxt: Cursor | None, **resolved: Any
    ) -> str | None:
        """The token of the page after ``nxt`` (None: this was the last page), carrying what
        the first page ``resolved`` (default bounds) so later pages read the same ranges."""
        if nxt is None:
            return None
        return self.mint_page(
            binding, {**resolved, "seg": nxt.segment, "at": ms(nxt.at), "id": nxt.id}
        )


Handler = Callable[[Ctx], Awaitable[Response]]
#: The names of a path template's parameters (``{person_id}``).
_PATH_NAMES = re.compile(r"\{(\w+)\}")


@dataclass(frozen=True, kw_only=True)
class Operation(Declaration):
    """A route of the read API: the shared declaration (method, path, id, summary, tag,
    scopes: :class:`covidtech.web.operations.Declaration`), its parameters and its answer."""

    handler: Handler
    params: tuple[Param, ...] = ()
    response: str | None = None  # component schema name of the success body
    status: int = 200
    media_type: str = "application/json"
    caching: str = "personal"  # "aggregate" | "personal" | "none"
    audited: bool = False
    body: str | None = None  # component schema name of the request body
    errors: tuple[int, ...] = PERSONAL_ERRORS

    @property
    def query_names(self) -> frozenset[str]:
        return frozenset(p.name for p in self.params if p.where == "query")


class Area(operations.Area[Operation]):
    """The declarations of one area of ``api/routes/``
    (:class:`covidtech.web.operations.Area` of :class:`Operation`: e.g. ``caching``,
    ``errors``, ``audited`` stated once). A parameter of the path that ``params`` does not
    declare is an id (:func:`api.params.id_path`), put first."""

    def __init__(self, tag: str, scopes: frozenset[ScopeKind] | None, **shared: Any) -> None:
        super().__init__(Operation, tag, scopes, **shared)

    def complete(self, path: str, fields: dict[str, Any]) -> dict[str, Any]:
        params: tuple[Param, ...] = fields.get("params", ())
        declared = {p.name for p in params}
        ids = tuple(id_path(n) for n in _PATH_NAMES.findall(path) if n not in declared)
        return {**fields, "params": (*ids, *params)}


# ------------------------------------------------------------------------------ dispatch


async def dispatch(op: Operation, request: Request) -> Response:
    """Run ``op`` for ``request``: auth, scope, parameters, handler, problems, metrics."""
    services: Services = request.app.state.services
    started = time.perf_counter()
    status = 500
    try:
        response = await _run(op, request, services)
        status = response.status_code
        return response
    except (Problem, StoreUnavailable, LogUnavailable) as e:
        handler = next(h for kind, h in _HANDLERS.items() if isinstance(e, kind))
        response = await handler(request, e)
        status = response.status_code
        return response
    finally:
        services.metrics.observe(op.path, op.method, status, time.perf_counter() - started)


async def _run(op: Operation, request: Request, services: Services) -> Response:
    ctx = Ctx(request, services, op, {})
    if op.scopes is not None:
        ctx.claims = authenticate(
            request.headers.get("authorization"),
            services.signer,
            services.clock(),
            services.revocations.is_revoked,
        )
        ctx.reach = reach_of(ctx.claims, op.scopes)
    unknown = sorted(set(request.query_params) - op.query_names)
    if unknown:  # a typo such as `provnce=79` must not silently widen a list
        raise Problem(
            "invalid-parameter",
            f"unknown query parameter {unknown[0]!r}",
            extra={"parameter": unknown[0]},
        )
    for p in op.params:
        if p.where == "path":
            raw = request.path_params.get(p.name)
        elif p.where == "header":
            raw = request.headers.get(p.name)
        else:
            raw = request.query_params.get(p.name)
        ctx.params[p.name] = p.read(raw)
    return await op.handler(ctx)


def route(op: Operation) -> Route:
    """The Starlette route of ``op`` (its endpoint is named after the operation id)."""

    async def endpoint(request: Request) -> Response:
        return await dispatch(op, request)

    endpoint.__name__ = op.op_id
    return Route(op.path, endpoint, methods=[op.method])


# ------------------------------------------------------------------------------ parameters


def page_params(default: int | None, maximum: int) -> tuple[Param, ...]:
    """``limit`` (``default``: the config's page size, None: undocumented) and ``page_token``."""
    return (
        int_param("limit", 1, maximum, default, "Page size."),
        text_param("page_token", 2048, "Opaque token of the next page (from next_page_token)."),
    )


#: An event stream's resumption: the id of the last event seen (:meth:`Ctx.alert_stream`).
RESUME_PARAMS = (
    text_param("Last-Event-ID", 20000, "Resume after this event id.", where="header"),
    text_param("last_event_id", 20000, "Same as the Last-Event-ID header."),
)


def day_range(
    ctx: Ctx, default_days: int, at_most: tuple[int, str] | None = None
) -> tuple[date, date]:
    """The ``from`` and ``to`` parameters, local days: ``to`` defaults to today, ``from`` to
    ``default_days`` days ending on ``to``; 400 if reversed or longer than the config allows,
    or than ``at_most`` (days, what: "<what> <days> days at a time")."""
    end: date = ctx.params["to"] or ctx.today
    start: date = ctx.params["from"] or end - timedelta(days=default_days - 1)
    if start > end:
        raise Problem("invalid-parameter", "from must not be after to", extra={"parameter": "from"})
    limit = ctx.services.config.max_range_days
    if (end - start).days + 1 > limit:
        raise Problem(
            "invalid-parameter",
            f"the range spans more than {limit} days",
            extra={"parameter": "from"},
        )
    if at_most is not None and (end - start).days >= at_most[0]:
        days, what = at_most
        raise Problem(
            "invalid-parameter", f"{what} {days} days at a time", extra={"parameter": "from"}
        )
    return start, end


# ------------------------------------------------------------------------------ bodies

#: Largest JSON body a route reads (a grant request, a certificate to verify).
MAX_BODY_BYTES = 16 * 1024


async def json_body(request: Request) -> Any:
    """The request's JSON body: 415 unless ``application/json``, 413 past
    :data:`MAX_BODY_BYTES`, 400 ``malformed-json`` (:func:`covidtech.jsonbody.parse_json`)."""
    content_type = request.headers.get("content-type", "")
    if content_type.split(";")[0].strip().lower() != "application/json":
        raise Problem("unsupported-media-type", "send the body as application/json")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise Problem("body-too-large", f"the body must be at most {MAX_BODY_BYTES} bytes")
    try:
        return parse_json(body)
    except BodyError as e:
        raise Problem("malformed-json", f"the body is not valid JSON: {e}") from None


def invalid_body(errors: list[dict[str, str]]) -> Problem:
    """422 ``validation-failed`` listing ``errors`` (``field``, ``message``)."""
    detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
    return Problem("validation-failed", detail, extra={"errors": errors})


# ------------------------------------------------------------------------------ scope


def check_area(ctx: Ctx, area: str) -> None:
    """403 unless the token reaches ``area`` (``VN``, the nation: ``moh`` only)."""
    reach = ctx.must_reach()
    if area == NATION:
        if not reach.everything:
            raise Problem("insufficient-scope", "national figures need the moh scope")
    elif not reach.allows(area):
        raise Problem("insufficient-scope", f"your token does not reach area {area}")


def area_name(area: str) -> str:
    return "Việt Nam" if area == NATION else reference.PROVINCES[area].name


async def read_in_reach(
    ctx: Ctx, what: str, column: str, row: Awaitable[Row | None], rows: Awaitable[list[Row]]
) -> tuple[Row | None, list[Row], str]:
    """``row`` (a person, a venue) and ``rows`` (its doses, its windows), read together, and
    the province of ``row`` (else ``column`` of the first of ``rows``) if the token reaches it;
    otherwise 404, as if the ``what`` did not exist."""
    one, many = await asyncio.gather(row, rows)
    province = one["province"] if one is not None else None
    if province is None and many:
        province = many[0][column]
    if province is None or not ctx.must_reach().allows(province):
        raise Problem("not-found", f"no such {what} in your scope")
    return one, many, str(province)


# ------------------------------------------------------------------------------ pages


def malformed_page() -> Problem:
    return Problem("invalid-page-token", "page token is malformed")


def page_int(value: Any) -> int:
    """An integer of a page position (a bool is not one)."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise malformed_page()
    return value


def page_str(value: Any) -> str:
    if not isinstance(value, str):
        raise malformed_page()
    return value


def ms(value: datetime) -> int:
    return int(value.timestamp() * 1000)


def from_ms(value: Any) -> datetime:
    return datetime.fromtimestamp(page_int(value) / 1000, UTC)


def _cursor(position: Mapping[str, Any]) -> Cursor | None:
    if position.get("seg") is None:
        return None
    seg, ident = page_str(position.get("seg")), page_str(position.get("id"))
    return Cursor(seg, from_ms(position.get("at")), ident)


def page(items: list[Any], token: str | None) -> dict[str, Any]:
    return {"items": items, "next_page_token": token}


async def newest_page(
    ctx: Ctx,
    segments: Sequence[Segment],
    position: Mapping[str, Any] | None,
    *,
    time_col: str,
    id_col: str,
    keep: Callable[[Row], bool] = lambda r: True,
) -> tuple[list[Row], Cursor | None]:
    """One page of ``segments``, newest first, after the position of a page token."""
    try:
        return await queries.newest_first(
            ctx.services.store,
            segments,
            time_col=time_col,
            id_col=id_col,
            limit=ctx.page_limit(),
            after=_cursor(position) if position else None,
            keep=keep,
        )
    except ValueError as e:
        raise malformed_page() from e
