"""Prometheus metrics of the ingest API, in a registry of its own (one per app instance).

- ``covidtech_ingest_requests_total{route,status}``: requests by route template and status.
- ``covidtech_ingest_request_duration_seconds{route}``: latency histogram, from the first byte
  of the request to the last byte of the response.
- ``covidtech_events_produced_total{topic}``: acknowledged events by (unprefixed) topic.
- ``covidtech_ingest_batch_items_total{route,outcome}``: batch items accepted / duplicate /
  rejected.
- ``covidtech_ingest_broker_unavailable_total``: requests answered 503.

``route`` is the route's path template (``/v1/samples/{sample_id}/result``), never the raw
path, so label cardinality stays bounded; unmatched paths count as ``unmatched``.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["CONTENT_TYPE_LATEST", "IngestMetrics", "MetricsMiddleware"]

_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class IngestMetrics:
    """The ingest API's collectors."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.requests = Counter(
            "covidtech_ingest_requests_total",
            "Ingest API requests by route template and HTTP status.",
            ["route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "covidtech_ingest_request_duration_seconds",
            "Ingest API request latency by route template.",
            ["route"],
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self.events = Counter(
            "covidtech_events_produced_total",
            "Events acknowledged by Kafka, by topic (without prefix).",
            ["topic"],
            registry=self.registry,
        )
        self.batch_items = Counter(
            "covidtech_ingest_batch_items_total",
            "Items of batch requests by outcome.",
            ["route", "outcome"],
            registry=self.registry,
        )
        self.broker_unavailable = Counter(
            "covidtech_ingest_broker_unavailable_total",
            "Requests answered 503 because the event log was unavailable.",
            registry=self.registry,
        )
        self.scan_statuses = Counter(
            "covidtech_ingest_scan_statuses_total",
            "Check-in statuses answered to scans (UNKNOWN: the facts were not read in time).",
            ["status"],
            registry=self.registry,
        )
        self.writes_in_flight = Gauge(
            "covidtech_ingest_writes_in_flight",
            "Writes handed to the producer and not yet acknowledged.",
            registry=self.registry,
        )
        self._request_children: dict[tuple[str, int], Counter] = {}
        self._latency_children: dict[str, Histogram] = {}
        self._event_children: dict[str, Counter] = {}

    def observe(self, route: str, status: int, seconds: float) -> None:
        """Count one request (children are cached: ``labels()`` is not free)."""
        counter = self._request_children.get((route, status))
        if counter is None:
            counter = self.requests.labels(route=route, status=str(status))
            self._request_children[(route, status)] = counter
        counter.inc()
        histogram = self._latency_children.get(route)
        if histogram is None:
            histogram = self.latency.labels(route=route)
            self._latency_children[route] = histogram
        histogram.observe(seconds)

    def produced(self, topic: str) -> None:
        """Count one acknowledged event."""
        counter = self._event_children.get(topic)
        if counter is None:
            counter = self.events.labels(topic=topic)
            self._event_children[topic] = counter
        counter.inc()

    def render(self) -> bytes:
        """The text exposition format."""
        return generate_latest(self.registry)


class MetricsMiddleware:
    """Pure ASGI middleware timing every HTTP request by its route template."""

    def __init__(
        self, app: ASGIApp, metrics: IngestMetrics, templates: Callable[[Scope], str]
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.templates = templates

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            self.metrics.observe(self.templates(scope), status, time.perf_counter() - started)
