"""The numbers of the presence-tracing rules (DESIGN.md, "Domain rules").

Every number DESIGN.md gives for presence, infectious windows, exposure alerts and clusters is
a field of :class:`PresenceRules` with the DESIGN default; a deployment overrides it with the
``COVIDTECH_RULES`` setting (``covidtech.settings.parse_rules``) and a test can vary it, while
the domain functions stay pure. The object is frozen and validated on construction: a bad value
fails the start of a process with a clear message instead of producing odd visits mid-stream.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = ["DEFAULT_RULES", "LocalZone", "PresenceRules", "field_problems", "refuse"]


def field_problems(
    rules: object,
    *,
    positive: tuple[str, ...] = (),
    non_negative: tuple[str, ...] = (),
    at_least_one: tuple[str, ...] = (),
    timezone: str | None = None,
) -> list[str]:
    """What is wrong with the named fields of a rules object: each of ``positive`` must be
    above zero, of ``non_negative`` not below it (durations or numbers), of ``at_least_one``
    at least 1, and ``timezone``, if given, a known IANA zone."""
    problems: list[str] = []
    for name in (*positive, *non_negative, *at_least_one):
        value = getattr(rules, name)
        zero = timedelta(0) if isinstance(value, timedelta) else 0
        if name in positive and value <= zero:
            problems.append(f"{name}={value} must be positive")
        elif name in non_negative and value < zero:
            problems.append(f"{name}={value} must not be negative")
        elif name in at_least_one and value < 1:
            problems.append(f"{name}={value} must be at least 1")
    if timezone is not None:
        try:
            ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError) as e:
            problems.append(f"timezone={timezone!r} is not a known IANA zone ({e})")
    return problems


def refuse(kind: str, problems: list[str]) -> None:
    """Raise ``ValueError`` naming every problem of ``kind`` rules, if there is any."""
    if problems:
        raise ValueError(f"invalid {kind} rules: " + "; ".join(problems))


class LocalZone:
    """Rules whose ``timezone`` (an IANA name) is the zone of their local days."""

    __slots__ = ()
    timezone: str

    @property
    def zone(self) -> ZoneInfo:
        """The local zone; ``ZoneInfo`` caches instances, so this is cheap to call."""
        return ZoneInfo(self.timezone)


@dataclass(frozen=True, slots=True)
class PresenceRules(LocalZone):
    """Settings of the presence, exposure and cluster rules; defaults are DESIGN.md's."""

    # Presence (a visit)
    default_dwell: timedelta = timedelta(minutes=60)
    """Dwell of a venue that did not set one."""
    max_dwell: timedelta = timedelta(hours=12)
    """Upper bound of any venue's dwell ("at most 12 h")."""
    out_pairing_limit: timedelta = timedelta(hours=12)
    """An OUT closes an open visit only if the visit started at most this long before it."""
    lateness: timedelta = timedelta(hours=72)
    """Scans received more than this long after ``scanned_at`` are rejected at ingestion."""
    future_tolerance: timedelta = timedelta(minutes=5)
    """Scans more than this far ahead of the receiving clock are rejected at ingestion."""
    presence_retention: timedelta = timedelta(days=21)
    """How long presence data lives (Cassandra TTL, topic retention)."""

    # Exposure windows and alerts
    aerosol_tail_cap: timedelta = timedelta(minutes=30)
    """Upper bound of the lingering-aerosol tail added after a case's visit."""
    high_risk_threshold: timedelta = timedelta(minutes=15)
    """An alert is HIGH when the overlap is at least this long, LOW otherwise."""

    # Infectious window
    onset_window_start_days: int = -2
    """With a symptom onset ``d``: the window opens at local midnight of ``d + this``."""
    onset_window_end_days: int = 11
    """With a symptom onset ``d``: the window closes at local midnight of ``d + this``."""
    no_onset_window_start: timedelta = timedelta(hours=-48)
    """Without an onset: the window opens at ``collected_at + this`` (negative: before)."""
    no_onset_window_end: timedelta = timedelta(hours=240)
    """Without an onset: the window closes at ``collected_at + this``."""

    # Clusters
    cluster_min_cases: int = 3
    """Distinct cases needed for a venue to be a cluster."""
    cluster_span: timedelta = timedelta(days=7)
    """Their exposure windows must start within this span of one another (inclusive)."""

    # Chains of transmission
    incubation_period: timedelta = timedelta(days=14)
    """A case is linked to an earlier case it had a HIGH exposure to when its positive sample
    was taken after the exposure and at most this long after it (domain/chains.py)."""

    timezone: str = "Asia/Ho_Chi_Minh"
    """IANA zone of local dates ("day") and local midnights."""

    def __post_init__(self) -> None:
        problems = field_problems(
            self,
            positive=(
                "default_dwell",
                "max_dwell",
                "out_pairing_limit",
                "presence_retention",
                "high_risk_threshold",
                "incubation_period",
            ),
            non_negative=("lateness", "future_tolerance", "aerosol_tail_cap", "cluster_span"),
        )
        if self.default_dwell > self.max_dwell:
            problems.append(
                f"default_dwell={self.default_dwell} exceeds max_dwell={self.max_dwell}"
            )
        if self.onset_window_end_days <= self.onset_window_start_days:
            problems.append(
                f"onset window [{self.onset_window_start_days}, {self.onset_window_end_days}) days"
                " is empty"
            )
        if self.no_onset_window_end <= self.no_onset_window_start:
            problems.append(
                f"no-onset window [{self.no_onset_window_start}, {self.no_onset_window_end}]"
                " is empty"
            )
        problems += field_problems(
            self, at_least_one=("cluster_min_cases",), timezone=self.timezone
        )
        refuse("presence", problems)

    def effective_dwell(self, dwell: timedelta | None = None) -> timedelta:
        """The dwell to pair a venue's scans with: the venue's own, else the default.

        DESIGN "Presence": dwell is the venue's default dwell (60 min unless the venue set one;
        at most 12 h). A dwell above ``max_dwell`` is clamped rather than rejected, because it
        arrives in already-accepted events (CheckInScanned carries it) and a replay must not
        fail on them. A dwell of zero or less has no meaning (every IN would close the previous
        visit at its own start) and raises ``ValueError``.
        """
        if dwell is None:
            return self.default_dwell
        if dwell <= timedelta(0):
            raise ValueError(f"dwell must be positive, got {dwell}")
        return min(dwell, self.max_dwell)


DEFAULT_RULES = PresenceRules()
"""The DESIGN.md defaults."""
