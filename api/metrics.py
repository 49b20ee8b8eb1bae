"""Prometheus metrics of the read API, on a registry of its own (one per app instance)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["CONTENT_TYPE", "ApiMetrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class ApiMetrics:
    """Request counts and latencies by route template, plus the read API's own gauges."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        r = self.registry
        self.requests = Counter(
            "covidtech_read_requests",
            "Requests answered, by route template, method and status.",
            ["route", "method", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "covidtech_read_request_seconds",
            "Time to answer (to the first byte for streams), by route template.",
            ["route"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.audit_records = Counter(
            "covidtech_read_audit_records", "Personal-data reads audited.", registry=r
        )
        self.rate_limited = Counter(
            "covidtech_read_rate_limited",
            "Citizen lookups refused by the rate limiter.",
            registry=r,
        )
        self.stream_events = Counter(
            "covidtech_read_stream_events", "Alerts sent to stream clients.", registry=r
        )
        self.grants_issued = Counter("covidtech_read_grants_issued", "Grants issued.", registry=r)
        self.grants_revoked = Counter(
            "covidtech_read_grants_revoked", "Grants revoked.", registry=r
        )
        self.stream_clients = Gauge(
            "covidtech_read_stream_clients", "Alert stream clients connected.", registry=r
        )
        self.revoked_ids = Gauge(
            "covidtech_read_revoked_ids", "Grant and token ids in the revocation list.", registry=r
        )

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        """Count one answer and its latency (label children are cached: this is per request)."""
        key = (route, method, status)
        children = self._children.get(key)
        if children is None:
            children = (
                self.requests.labels(route, method, str(status)),
                self.latency.labels(route),
            )
            self._children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def track_revocations(self, size: Callable[[], int]) -> None:
        self.revoked_ids.set_function(lambda: float(size()))

    def track_stream_clients(self, size: Callable[[], int]) -> None:
        self.stream_clients.set_function(lambda: float(size()))

    def render(self) -> bytes:
        return generate_latest(self.registry)
