"""A person's colour at check-in (PC-Covid's status), from their health facts (pure).

The rule (issue 15, "Status at check-in"), evaluated at one instant ``at`` (the scan's time):

- ``RED``: a positive sample collected in the last ``red_window`` (14 days);
- else ``YELLOW``: an ACTIVE HIGH-risk exposure in the last ``exposure_window`` (14 days), or
  the person is neither fully vaccinated nor recovered;
- else ``GREEN``: fully vaccinated (``vaccination_delay`` after the dose completing the primary
  series, 0 by default) or recovered (a positive older than ``red_window`` but collected within
  ``recovery_window``, 180 days), and no such exposure.

Precedence is RED over YELLOW over GREEN. A fact dated after ``at`` does not count: a batch of
offline scans is answered with the status each person had when scanned. Windows are
half-open ``(at - window, at]``: a fact exactly ``window`` old no longer counts.

``UNKNOWN`` is not decided here: it is what the ingest API answers when it could not read the
facts in time (the check-in is accepted all the same).

No I/O: the facts are read by the caller (``projections.status``) and the clock is passed in.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from domain.rules import field_problems, refuse

__all__ = [
    "DEFAULT_RULES",
    "CheckInStatus",
    "HealthFacts",
    "StatusRules",
    "check_in_status",
]


class CheckInStatus(StrEnum):
    """The colour a venue's scanner shows; ``UNKNOWN`` when the facts could not be read."""

    GREEN = "GREEN"
    YELLOW = "YELLOW"
    RED = "RED"
    UNKNOWN = "UNKNOWN"


@dataclass(frozen=True, slots=True)
class StatusRules:
    """The windows of the status rule; overridden by the ``COVIDTECH_RULES`` setting."""

    red_window: timedelta = timedelta(days=14)
    """A positive sample collected within this long before the scan makes the person RED."""
    exposure_window: timedelta = timedelta(days=14)
    """An ACTIVE HIGH-risk exposure ending within this long before the scan makes YELLOW."""
    recovery_window: timedelta = timedelta(days=180)
    """A positive older than ``red_window`` but within this counts as recovered (GREEN)."""
    vaccination_delay: timedelta = timedelta(0)
    """How long after the dose completing the primary series a person is fully vaccinated."""

    def __post_init__(self) -> None:
        problems = field_problems(
            self,
            positive=("red_window", "exposure_window", "recovery_window"),
            non_negative=("vaccination_delay",),
        )
        if self.recovery_window < self.red_window:
            problems.append(
                f"recovery_window={self.recovery_window} is shorter than "
                f"red_window={self.red_window}"
            )
        refuse("status", problems)

    @property
    def positive_retention(self) -> timedelta:
        """How long a positive sample matters to the rule (the facts' TTL)."""
        return max(self.red_window, self.recovery_window)


DEFAULT_RULES = StatusRules()
"""The issue's defaults: 14 days RED and YELLOW, 180 days of recovery."""


@dataclass(frozen=True, slots=True)
class HealthFacts:
    """What the rule needs of one person, in any order and possibly with stale entries.

    ``positives``: collection times of the person's positive individual samples;
    ``high_exposures``: end times of the contact visits of the person's ACTIVE HIGH alerts
    (a withdrawn alert, or one lowered to LOW, is not in it); ``fully_vaccinated_at``: when the
    dose completing the primary series was administered (None: not complete).
    """

    positives: tuple[datetime, ...] = ()
    high_exposures: tuple[datetime, ...] = ()
    fully_vaccinated_at: datetime | None = None


def _latest(times: Iterable[datetime], at: datetime) -> datetime | None:
    return max((t for t in times if t <= at), default=None)


def _within(t: datetime | None, at: datetime, window: timedelta) -> bool:
    return t is not None and at - window < t <= at


def check_in_status(
    facts: HealthFacts, at: datetime, rules: StatusRules = DEFAULT_RULES
) -> CheckInStatus:
    """The person's colour at ``at`` (aware); see the module docstring for the rule."""
    positive = _latest(facts.positives, at)
    if _within(positive, at, rules.red_window):
        return CheckInStatus.RED
    if _within(_latest(facts.high_exposures, at), at, rules.exposure_window):
        return CheckInStatus.YELLOW
    recovered = _within(positive, at, rules.recovery_window)
    vaccinated = (
        facts.fully_vaccinated_at is not None
        and facts.fully_vaccinated_at + rules.vaccination_delay <= at
    )
    return CheckInStatus.GREEN if recovered or vaccinated else CheckInStatus.YELLOW
