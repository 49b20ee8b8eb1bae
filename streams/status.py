"""Rows of ``status_facts_by_person``: the health facts of the check-in status (V007).

Three agents write facts of one person into the person's partition, each its own rows, so no
two source partitions ever write the same row:

- the per-person agent (``streams/people.py``): one ``positive`` row per positive individual
  sample (ref: sample id, at: collected_at);
- the per-venue agent (``streams/venues.py``): one ``exposure`` row per ACTIVE HIGH alert of
  the person as the contact (ref: alert id, at: the contact visit's end), deleted when the
  alert is withdrawn or lowered to LOW;
- the per-person dose agent (``streams/vaccination.py``): one ``vaccinated`` row (at: the
  administration time of the dose completing the primary series).

Every row is an absolute value under a deterministic key, so a replay writes the same rows.
TTLs follow the status rules: a fact lives as long as it can change a colour.
"""

from __future__ import annotations

from datetime import datetime

from domain.status import DEFAULT_RULES, StatusRules
from projections.model import Delete, Upsert

__all__ = ["EXPOSURE", "POSITIVE", "TABLE", "VACCINATED", "exposure", "positive", "vaccinated"]

TABLE = "status_facts_by_person"
POSITIVE = "positive"
EXPOSURE = "exposure"
VACCINATED = "vaccinated"


def positive(
    person_id: str, sample_id: str, collected_at: datetime, rules: StatusRules = DEFAULT_RULES
) -> Upsert:
    """The fact of one positive individual sample."""
    return Upsert(
        TABLE,
        {"person_id": person_id, "kind": POSITIVE, "ref": sample_id, "at": collected_at},
        expires_at=collected_at + rules.positive_retention,
    )


def exposure(
    person_id: str,
    alert_id: str,
    visit_end: datetime,
    high_and_active: bool,
    rules: StatusRules = DEFAULT_RULES,
) -> Upsert | Delete:
    """The fact of one alert: its row while it is ACTIVE and HIGH, else its deletion."""
    key = {"person_id": person_id, "kind": EXPOSURE, "ref": alert_id}
    if not high_and_active:
        return Delete(TABLE, key)
    return Upsert(TABLE, {**key, "at": visit_end}, expires_at=visit_end + rules.exposure_window)


def vaccinated(person_id: str, completed_at: datetime) -> Upsert:
    """The fact of a completed primary series."""
    return Upsert(
        TABLE, {"person_id": person_id, "kind": VACCINATED, "ref": "", "at": completed_at}
    )
