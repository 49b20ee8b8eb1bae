"""Settings of the read API, read once from ``COVIDTECH_READ_*`` and validated at start.

The deployment-wide settings (Kafka, Cassandra, secret, port) are :class:`covidtech.settings.
Settings`; these are the read API's own numbers. A bad value raises
:class:`covidtech.settings.SettingsError` naming the variable.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import TypeVar

from covidtech.settings import SettingsError

__all__ = ["PREFIX", "ReadApiConfig", "load"]

PREFIX = "COVIDTECH_READ_"

T = TypeVar("T")


def _setting(default: T, doc: str) -> T:
    """A field of the config: its default and what it is for (``metadata["doc"]``)."""
    return field(default=default, metadata={"doc": doc})


@dataclass(frozen=True)
class ReadApiConfig:
    """The read API's numbers. Field ``x`` is read from ``COVIDTECH_READ_X``."""

    lookup_rate_per_second: float = _setting(
        5.0, "citizen lookups refilled per second, per client address"
    )
    lookup_burst: int = _setting(30, "citizen lookups a client may make at once")
    lookup_code_rate_per_second: float = _setting(
        0.1, "lookups of one code refilled per second, whatever the address"
    )
    lookup_code_burst: int = _setting(
        10, "lookups of one code allowed at once, whatever the address"
    )
    certificate_rate_per_second: float = _setting(
        20.0, "certificate verifications and key reads refilled per second, per address"
    )
    certificate_burst: int = _setting(200, "certificate verifications a client may make at once")
    rate_limit_clients: int = _setting(100_000, "client addresses tracked by the rate limiter")
    cache_max_age: int = _setting(60, "Cache-Control max-age of aggregates (seconds)")
    aggregate_cache_seconds: float = _setting(
        15.0, "how long the API reuses a computed aggregate (0: never)"
    )
    page_size: int = _setting(100, "default page size of lists")
    max_page_size: int = _setting(500, "largest page size a client may ask")
    max_range_days: int = _setting(366, "longest date range of a series or a daily query")
    max_grant_days: int = _setting(366, "longest validity of a grant")
    sse_keepalive_seconds: float = _setting(15.0, "keep-alive comment interval of the alert stream")
    stream_recheck_seconds: float = _setting(
        1.0, "how often an open alert stream re-checks its token (revoked, expired)"
    )
    sse_queue_size: int = _setting(1000, "alerts buffered per stream client before it is dropped")
    catchup_timeout_seconds: float = _setting(
        30.0, "longest wait for Kafka when a stream resumes or starts"
    )
    pending_alarm_hours: int = _setting(48, "a sample pending longer than this is reported as late")
    notice_advice_high: str = _setting(
        "You were at this place at the same time as a confirmed case, for 15 minutes "
        "or more. Stay at home and keep away from others, book a PCR test at a testing site, "
        "declare your health in the app, and call the health hotline 19009095 if you have "
        "fever, cough or difficulty breathing.",
        "what an exposure notice of HIGH risk tells the person to do",
    )
    notice_advice_low: str = _setting(
        "You were at this place around the time a confirmed case was there. Watch for "
        "symptoms (fever, cough, sore throat, loss of taste or smell) for 14 days, wear a mask, "
        "limit contacts, and get tested if symptoms appear.",
        "what an exposure notice of LOW risk tells the person to do",
    )
    notice_advice_withdrawn: str = _setting(
        "This notice was withdrawn: newer check-in records show you were not at this "
        "place at the same time as the case. Nothing more to do for this visit.",
        "what a withdrawn exposure notice tells the person",
    )

    def __post_init__(self) -> None:
        problems = []
        if self.lookup_rate_per_second <= 0:
            problems.append("LOOKUP_RATE_PER_SECOND must be positive")
        if self.certificate_rate_per_second <= 0:
            problems.append("CERTIFICATE_RATE_PER_SECOND must be positive")
        if self.lookup_code_rate_per_second <= 0:
            problems.append("LOOKUP_CODE_RATE_PER_SECOND must be positive")
        for name in (
            "lookup_burst",
            "lookup_code_burst",
            "certificate_burst",
            "rate_limit_clients",
            "page_size",
            "max_page_size",
            "max_range_days",
            "max_grant_days",
            "sse_queue_size",
            "pending_alarm_hours",
        ):
            if getattr(self, name) < 1:
                problems.append(f"{name.upper()} must be at least 1")
        if self.page_size > self.max_page_size:
            problems.append("PAGE_SIZE must not exceed MAX_PAGE_SIZE")
        for name in ("sse_keepalive_seconds", "catchup_timeout_seconds", "stream_recheck_seconds"):
            if getattr(self, name) <= 0:
                problems.append(f"{name.upper()} must be positive")
        for name in ("notice_advice_high", "notice_advice_low", "notice_advice_withdrawn"):
            if not getattr(self, name).strip():
                problems.append(f"{name.upper()} must not be empty")
        if self.cache_max_age < 0 or self.aggregate_cache_seconds < 0:
            problems.append("cache durations must not be negative")
        if problems:
            raise SettingsError("; ".join(f"{PREFIX}{p}" for p in problems))


def load(env: Mapping[str, str] | None = None) -> ReadApiConfig:
    """Read the config from ``env`` (default: ``os.environ``); raise SettingsError if invalid."""
    env = os.environ if env is None else env
    values: dict[str, float | int | str] = {}
    for f in fields(ReadApiConfig):
        raw = env.get(PREFIX + f.name.upper())
        if raw is None or raw == "":
            continue
        if f.type == "str":
            values[f.name] = raw
            continue
        try:
            values[f.name] = float(raw) if f.type == "float" else int(raw)
        except ValueError as e:
            raise SettingsError(f"{PREFIX}{f.name.upper()}={raw!r} is not a number") from e
    return ReadApiConfig(**values)  # type: ignore[arg-type]
