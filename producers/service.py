"""One ingest API instance's collaborators, and the steps every write route shares.

:class:`IngestService` is built once per process by the app's lifespan (the composition root)
and reached by routes through the typed lifespan state. It holds the event log, the views of
``venues`` and ``samples``, the idempotency guard, the signers of tokens and QR codes, the
metrics and the clock, and offers the shared steps: authenticate a bearer token, check scopes,
read a JSON body within the size limit, write an event exactly once per idempotency key, and
look a venue or sample up with a read-your-writes barrier on a miss.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from starlette.requests import Request

from covidtech.jsonbody import BodyError, parse_json
from covidtech.settings import Settings
from covidtech.tokens import (
    Claims,
    ExpiredToken,
    RevokedToken,
    ScopeKind,
    TokenError,
    is_scope_value,
)
from covidtech.web.problems import FieldError, Problem, validation_problem
from domain.qr import QrKind
from producers import posters
from producers.caches import KnownSample, SampleBook, VenueDirectory, VenueEntry
from producers.events import Outgoing
from producers.idempotency import Claim, IdConflict, IdempotencyGuard, Outcome
from producers.metrics import IngestMetrics
from producers.ports import BrokerUnavailable, Delivery, EventLog, Feed
from producers.requests.common import CachedQrSigner, IngestLimits
from producers.status import StatusLookup
from schemas.codec import Registry

__all__ = [
    "IngestConfig",
    "IngestService",
    "fingerprint",
    "read_json",
    "require_any",
    "require_own_person",
]

R = TypeVar("R")

REALM = "covidtech-ingest"
_IDEMPOTENCY_KEY = re.compile(r"[A-Za-z0-9_.:-]{1,128}")
_VERIFIED_CAPACITY = 10_000


@dataclass(frozen=True)
class IngestConfig:
    """Tunables of the ingest API (defaults suit one node; see docs/ingest-api.md)."""

    max_body_bytes: int = 1024 * 1024
    limits: IngestLimits = field(default_factory=IngestLimits)
    #: How long a request waits for the broker's acknowledgement before answering 503.
    delivery_timeout_s: float = 5.0
    #: Retry-After of 503 answers, in seconds.
    retry_after_s: int = 2
    linger_ms: int = 5
    #: How long a lookup miss may wait for the topic views to catch up with the log.
    sync_timeout_s: float = 2.0
    #: How long start-up waits for the views' initial catch-up (readiness waits for it anyway).
    startup_wait_s: float = 10.0
    shutdown_grace_s: float = 5.0
    idempotency_capacity: int = 200_000
    #: How long a scan's answer may wait for the person's status facts beyond the broker's
    #: acknowledgement (counted from the request's validation); UNKNOWN after it.
    status_timeout_s: float = 0.02
    poster_cache: int = 256


def fingerprint(*parts: object) -> bytes:
    """A short digest of validated request content (frozen dataclasses have stable reprs)."""
    return hashlib.blake2b(repr(parts).encode(), digest_size=16).digest()


def _bearer_challenge(error: str | None = None, description: str | None = None) -> str:
    challenge = f'Bearer realm="{REALM}"'
    if error:
        challenge += f', error="{error}"'
    if description:
        challenge += f', error_description="{description}"'
    return challenge


def require_any(claims: Claims, *kinds: ScopeKind) -> None:
    """403 unless the token holds a scope of one of ``kinds`` (any value)."""
    if any(claims.has(kind) for kind in kinds):
        return
    wanted = " or ".join(f"{k.value}{':<id>' if k.takes_value else ''}" for k in kinds)
    raise Problem(
        "insufficient-scope",
        f"this route needs a {wanted} scope",
        headers={
            "WWW-Authenticate": _bearer_challenge("insufficient_scope")
            + f', scope="{" ".join(k.value for k in kinds)}"'
        },
    )


def scope_problem(scope: str, field_path: str, detail: str | None = None) -> Problem:
    """403 for a write the token's scopes do not cover, naming the field that decided it."""
    message = detail or f"the token has no {scope} scope"
    return Problem(
        "insufficient-scope",
        message,
        errors=[FieldError(field_path, "insufficient-scope", message)],
        headers={
            "WWW-Authenticate": _bearer_challenge("insufficient_scope") + f', scope="{scope}"'
        },
    )


def require_own_person(claims: Claims, person_id: str, field_path: str) -> None:
    """403 when a token bound to a person (``person:<id>``) names another person: a
    citizen's token acts for that citizen only. Tokens bound to nobody are the caller's
    business."""
    bound = claims.person
    if bound is not None and bound != person_id:
        raise scope_problem(
            f"person:{person_id}",
            field_path,
            "this token acts for its own person only; this QR names another person",
        )


def require_province(
    claims: Claims, kind: ScopeKind, ident: str, province: str, field_path: str
) -> None:
    """403 unless the token acts as site or lab ``ident`` in ``province``
    (``site:<ident>@<province>``): a site writes for its own province(s) only."""
    if province not in claims.provinces(kind, ident):
        raise scope_problem(f"{kind.value}:{ident}@{province}", field_path)


def scoped_id(claims: Claims, kind: ScopeKind, requested: str | None, field_path: str) -> str:
    """The site or lab a write is for: the one named in the body, else the token's only one."""
    held = claims.values(kind)
    if requested is not None:
        if not is_scope_value(requested):
            message = "must be 1-64 ASCII letters, digits, '_' or '-'"
            raise validation_problem([FieldError(field_path, "invalid-value", message)])
        if requested not in held:
            raise scope_problem(f"{kind.value}:{requested}", field_path)
        return requested
    if len(held) == 1:
        return next(iter(held))
    message = f"the token holds several {kind.value} scopes; name one in {field_path}"
    raise Problem(
        "site-ambiguous", message, errors=[FieldError(field_path, "site-ambiguous", message)]
    )


async def read_json(request: Request, limit: int) -> Any:
    """The request's JSON body: 415 for another media type, 413 past ``limit``, 400 if invalid."""
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media != "application/json" and not (
        media.startswith("application/") and media.endswith("+json")
    ):
        raise Problem(
            "unsupported-media-type",
            f"send the body as application/json (got {media or 'no Content-Type'})",
        )
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise Problem(
            "body-too-large", f"bodies are limited to {limit} bytes", extra={"limit": limit}
        )
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise Problem(
                "body-too-large", f"bodies are limited to {limit} bytes", extra={"limit": limit}
            )
        chunks.append(chunk)
    try:
        return parse_json(b"".join(chunks))
    except BodyError as e:
        raise Problem("malformed-json", str(e)) from None


class IngestService:
    """The shared state and steps of one ingest API instance."""

    def __init__(
        self,
        *,
        settings: Settings,
        config: IngestConfig,
        log: EventLog,
        registry: Registry,
        venues: VenueDirectory,
        samples: SampleBook,
        venue_feed: Feed | None,
        sample_feed: Feed | None,
        metrics: IngestMetrics,
        clock: Callable[[], datetime],
        is_revoked: Callable[[str], bool] | None,
        status: StatusLookup | None = None,
    ) -> None:
        self.settings = settings
        self.config = config
        self.limits = config.limits
        self.log = log
        self.registry = registry
        self.venues = venues
        self.samples = samples
        self.venue_feed = venue_feed
        self.sample_feed = sample_feed
        self.metrics = metrics
        self.clock = clock
        self.is_revoked = is_revoked
        self.status = status if status is not None else StatusLookup(None)
        self.tokens = settings.token_signer()
        self._verified: dict[str, Claims] = {}
        self.qr = CachedQrSigner(settings.secret)
        self.guard: IdempotencyGuard[Any] = IdempotencyGuard(config.idempotency_capacity)
        self._posters: OrderedDict[tuple[str, ...], bytes] = OrderedDict()

    def now(self) -> datetime:
        """The server clock, aware UTC."""
        value = self.clock()
        if value.tzinfo is None:
            raise ValueError("the clock must return aware datetimes")
        return value.astimezone(UTC)

    # ------------------------------------------------------------------ auth

    def authenticate(self, request: Request) -> Claims:
        """The claims of the request's bearer token, or a 401 problem."""
        header = request.headers.get("authorization")
        if not header:
            raise Problem(
                "token-missing",
                "send Authorization: Bearer <token>",
                headers={"WWW-Authenticate": _bearer_challenge()},
            )
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Problem(
                "token-invalid",
                "the Authorization header must be: Bearer <token>",
                headers={"WWW-Authenticate": _bearer_challenge("invalid_request")},
            )
        now = self.now()
        try:
            return self._verify(token, now)
        except ExpiredToken as e:
            slug, text = "token-expired", str(e)
        except RevokedToken:
            slug, text = "token-revoked", "the token was revoked"
        except TokenError:
            # Forged and malformed tokens get the same answer: no oracle for forgers.
            slug, text = "token-invalid", "the token is not valid"
        raise Problem(
            slug,
            text,
            headers={"WWW-Authenticate": _bearer_challenge("invalid_token", text)},
        )

    def _verify(self, token: str, now: datetime) -> Claims:
        # Verified claims are remembered per token (clients reuse a token for hours); expiry
        # and revocation are checked again on every use.
        claims = self._verified.get(token)
        if claims is None:
            claims = self.tokens.verify(token, now, is_revoked=self.is_revoked)
            if len(self._verified) >= _VERIFIED_CAPACITY:
                self._verified.clear()
            self._verified[token] = claims
            return claims
        if now >= claims.expires_at:
            del self._verified[token]
            raise ExpiredToken(f"token expired at {claims.expires_at.isoformat()}")
        if self.is_revoked is not None and (
            self.is_revoked(claims.token_id)
            or (claims.grant_id is not None and self.is_revoked(claims.grant_id))
        ):
            raise RevokedToken("token revoked")
        return claims

    # ------------------------------------------------------------------ writes

    async def produce(self, out: Outgoing) -> Delivery:
        """Encode and write one event; return once the broker acknowledged it."""
        value = self.registry.encode(out.record_name, out.record)
        self.metrics.writes_in_flight.inc()
        try:
            delivery = await self.log.submit(
                self.settings.topic(out.topic.name), out.key.encode("utf-8"), value
            )
            result = await delivery
        finally:
            self.metrics.writes_in_flight.dec()
        self.metrics.produced(out.topic.name)
        return result

    def knows(self, key: str) -> bool:
        """Whether a write for this idempotency key is in flight, in doubt or recent."""
        return self.guard.knows(key)

    async def write_once(
        self,
        key: str | None,
        content: bytes,
        write: Callable[[], Awaitable[R]],
        *,
        conflict: Callable[[], Problem],
    ) -> Outcome[R]:
        """Run ``write`` once per ``key`` (see :mod:`producers.idempotency`).

        ``key`` None writes without deduplication. Raises :class:`BrokerUnavailable` (503) when
        the write fails or its acknowledgement does not come within the delivery timeout, and
        ``conflict()`` when the key was used for other content.
        """
        timeout = self.config.delivery_timeout_s
        try:
            if key is None:
                task = asyncio.ensure_future(write())
                return Outcome(await asyncio.wait_for(asyncio.shield(task), timeout), False)
            outcome: Outcome[R] = await self.guard.run(key, content, write, within=timeout)
            return outcome
        except TimeoutError:
            self.log.trip()
            raise BrokerUnavailable(
                "the event log did not acknowledge in time; retry with the same ids",
                retry_after=self.config.retry_after_s,
                in_doubt=True,
            ) from None
        except IdConflict:
            raise conflict() from None

    async def write_many(
        self, writes: Sequence[tuple[str, bytes, Outgoing, Callable[[], Problem]]]
    ) -> list[Outcome[Delivery] | BrokerUnavailable | Problem]:
        """Write many events at once, each once per idempotency key; one result per write.

        ``writes`` holds ``(key, content fingerprint, event, conflict)``. Every fresh event is
        handed to the producer first, then all acknowledgements are awaited together for at
        most the delivery timeout (no task per event: this is the batch path). A write whose
        acknowledgement did not come in time stays in the guard for the retry.
        """
        results: list[Outcome[Delivery] | BrokerUnavailable | Problem | None] = [None] * len(writes)
        waiting: list[tuple[int, Claim[Any]]] = []
        for i, (key, content, out, conflict) in enumerate(writes):
            try:
                claim: Claim[Any] = self.guard.claim(key, content)
            except IdConflict:
                results[i] = conflict()
                continue
            if claim.fresh:
                try:
                    value = self.registry.encode(out.record_name, out.record)
                    delivery = await self.log.submit(
                        self.settings.topic(out.topic.name), out.key.encode("utf-8"), value
                    )
                except BrokerUnavailable as e:
                    claim.future.set_exception(e)
                    results[i] = e
                    continue
                except BaseException:
                    claim.future.cancel()  # forgets the key
                    raise
                self._chain(out.topic.name, delivery, claim.future)
            waiting.append((i, claim))
        if waiting:
            await asyncio.wait(
                {c.future for _, c in waiting}, timeout=self.config.delivery_timeout_s
            )
        tripped = False
        for i, claim in waiting:
            future = claim.future
            if not future.done():
                tripped = True
                results[i] = BrokerUnavailable(
                    "the event log did not acknowledge in time; retry with the same ids",
                    retry_after=self.config.retry_after_s,
                    in_doubt=True,
                )
                continue
            if future.cancelled():
                results[i] = BrokerUnavailable("write cancelled")
                continue
            error = future.exception()
            if isinstance(error, BrokerUnavailable):
                results[i] = error
            elif error is not None:
                raise error
            else:
                results[i] = self.guard.acknowledge(claim)
        if tripped:
            self.log.trip()
        return [r for r in results if r is not None]

    def _chain(
        self, topic: str, delivery: asyncio.Future[Delivery], target: asyncio.Future[Any]
    ) -> None:
        self.metrics.writes_in_flight.inc()

        def done(f: asyncio.Future[Delivery]) -> None:
            self.metrics.writes_in_flight.dec()
            if target.done():
                return
            if f.cancelled():
                target.set_exception(BrokerUnavailable("delivery cancelled"))
            elif (error := f.exception()) is not None:
                target.set_exception(error)
            else:
                self.metrics.produced(topic)
                target.set_result(f.result())

        delivery.add_done_callback(done)

    # ------------------------------------------------------------------ lookups

    async def venues_for(self, venue_ids: set[str]) -> dict[str, VenueEntry | None]:
        """Venues by id; one read-your-writes barrier on ``venues`` if any is unknown here."""
        found = {v: self.venues.get(v) for v in venue_ids}
        if any(v is None for v in found.values()):
            await self._sync(self.venue_feed)
            found = {v: self.venues.get(v) for v in venue_ids}
        return found

    async def venue(self, venue_id: str) -> VenueEntry | None:
        """One venue (see :meth:`venues_for`)."""
        return (await self.venues_for({venue_id}))[venue_id]

    async def sample(self, sample_id: str) -> KnownSample | None:
        """A collected sample as the ``samples`` topic holds it now.

        A barrier on ``samples`` runs unless this instance already knows the sample's result:
        an unknown sample may have been collected through another instance, and a sample
        without a result here may have been resulted through another one. Deciding on a result
        without the barrier could acknowledge a second, different result that the log (first
        result wins) then ignores.
        """
        known = self.samples.get(sample_id)
        if known is None or known.result is None:
            await self._sync(self.sample_feed)
            known = self.samples.get(sample_id)
        return known

    async def _sync(self, feed: Feed | None) -> None:
        if feed is None:
            return
        try:
            await feed.sync(self.config.sync_timeout_s)
        except BrokerUnavailable as e:
            e.retry_after = self.config.retry_after_s
            raise

    # ------------------------------------------------------------------ images

    async def poster(self, venue: VenueEntry, fmt: str) -> bytes:
        """The venue's poster (cached; rendered in a worker thread)."""
        key = (venue.venue_id, venue.name, venue.address, fmt)
        cached = self._posters.get(key)
        if cached is not None:
            self._posters.move_to_end(key)
            return cached
        payload = self.qr.payload(QrKind.VENUE, venue.venue_id)
        render = posters.venue_poster_png if fmt == "png" else posters.venue_poster_svg
        data = await asyncio.to_thread(render, venue.name, venue.address, venue.venue_id, payload)
        self._posters[key] = data
        while len(self._posters) > self.config.poster_cache:
            self._posters.popitem(last=False)
        return data

    @staticmethod
    def idempotency_key(request: Request) -> str | None:
        """The optional ``Idempotency-Key`` header (for creations with server-side ids)."""
        key = request.headers.get("idempotency-key")
        if key is None:
            return None
        if not _IDEMPOTENCY_KEY.fullmatch(key):
            message = "must be 1-128 letters, digits, '_', '.', ':' or '-'"
            raise Problem(
                "invalid-value",
                f"Idempotency-Key {message}",
                errors=[FieldError("Idempotency-Key", "invalid-value", message)],
            )
        return key
