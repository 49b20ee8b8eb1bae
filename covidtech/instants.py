"""Instants on the wire: RFC 3339 date-times with an offset, one parser for both APIs.

Strict on purpose: exactly ``YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)``, ASCII digits only,
years 1970-2999. Far outside those years nothing can be stored or retained, and date
arithmetic near year 1 or 9999 overflows (``0001-01-01T00:00:00+01:00`` is before the first
instant Python can hold in UTC): such a value is refused as invalid input, never a 500.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

__all__ = ["MAX_YEAR", "MIN_YEAR", "InstantError", "parse_instant"]

#: Years an instant may name.
MIN_YEAR, MAX_YEAR = 1970, 2999

_INSTANT = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})",
    re.ASCII,  # \d is [0-9] only: no other scripts' digits
)


class InstantError(ValueError):
    """Text that is not an instant this system accepts."""


def check_year(year: int) -> None:
    if not MIN_YEAR <= year <= MAX_YEAR:
        raise InstantError(f"the year must be between {MIN_YEAR} and {MAX_YEAR}")


def parse_instant(text: str) -> datetime:
    """An RFC 3339 date-time with an offset (``2021-08-01T10:00:00+07:00``), as an aware UTC
    datetime. A leap second reads as :59; fractions past microseconds are cut. Raises
    :class:`InstantError`: a time without an offset has no instant, so it is refused rather
    than guessed."""
    m = _INSTANT.fullmatch(text)
    if m is None:
        raise InstantError(
            "must be an RFC 3339 date-time with an offset, e.g. 2021-08-01T09:30:00Z"
        )
    check_year(int(m[1]))
    fraction = m[7] or ""
    micros = int((fraction[1:] + "000000")[:6]) if fraction else 0
    zone = m[8]
    try:
        if zone in ("Z", "z"):
            tz = UTC
        else:
            sign = 1 if zone[0] == "+" else -1
            hours, minutes = int(zone[1:3]), int(zone[4:6])
            if hours > 23 or minutes > 59:
                raise ValueError("offset out of range")
            tz = timezone(sign * timedelta(hours=hours, minutes=minutes))
        if int(m[6]) > 60:
            raise ValueError("second out of range")
        second = min(int(m[6]), 59)
        value = datetime(
            int(m[1]), int(m[2]), int(m[3]), int(m[4]), int(m[5]), second, micros, tzinfo=tz
        )
        return value.astimezone(UTC)
    except (ValueError, OverflowError) as e:
        raise InstantError(f"not a valid date-time: {e}") from e
