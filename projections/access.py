"""Rows of the access-control tables (``grants``, ``audit_log``) from their events.

The read API appends GrantIssued / GrantRevoked to the ``grants`` topic and PersonalDataRead
to ``audit``, waits for Kafka's acknowledgement, then applies the mutations built here. The
rows are a function of the events only (keys from the event, no wall clock), so replaying the
two topics through these functions rebuilds the same tables.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

from projections.model import Upsert

__all__ = ["AUDIT_RETENTION", "LOCAL_TZ", "audit_row", "grant_issued_row", "grant_revoked_row"]

LOCAL_TZ = ZoneInfo("Asia/Ho_Chi_Minh")
#: How long audit rows live (the table's default TTL and the ``audit`` topic's retention).
AUDIT_RETENTION = timedelta(days=365)


def grant_issued_row(event: Mapping[str, Any]) -> Upsert:
    """The ``grants`` row of a GrantIssued event (revocation columns untouched)."""
    return _grants_row(
        event,
        {
            "agency": event["agency"],
            "scopes": list(event["scopes"]),
            "purpose": event["purpose"],
            "granted_by": event["granted_by"],
            "granted_by_grant_id": event.get("granted_by_grant_id"),
            "granted_at": event["granted_at"],
            "expires_at": event["expires_at"],
        },
    )


def grant_revoked_row(event: Mapping[str, Any]) -> Upsert:
    """The revocation columns of a ``grants`` row from a GrantRevoked event."""
    return _grants_row(
        event,
        {
            "revoked_at": event["revoked_at"],
            "revoked_by": event["revoked_by"],
            "revoke_reason": event.get("reason"),
        },
    )


def _grants_row(event: Mapping[str, Any], columns: dict[str, Any]) -> Upsert:
    """``columns`` of the ``grants`` row of ``event``'s grant (its key: grant and token id)."""
    return Upsert(
        "grants", {"grant_id": event["grant_id"], "token_id": event["token_id"], **columns}
    )


def audit_row(event: Mapping[str, Any]) -> Upsert:
    """The ``audit_log`` row of a PersonalDataRead event, by local day of the read; it
    expires a year after the read (event time), like the topic's retention."""
    read_at = event["read_at"]
    return Upsert(
        "audit_log",
        {
            "day": read_at.astimezone(LOCAL_TZ).date(),
            "read_at": read_at,
            "audit_id": event["event_id"],
            "actor": event["actor"],
            "grant_id": event.get("grant_id"),
            "token_id": event["token_id"],
            "scopes": list(event["scopes"]),
            "method": event["method"],
            "route": event["route"],
            "subject": event["subject"],
            "person_ids": list(event["person_ids"]),
            "client_address": event.get("client_address"),
            "status": event["status"],
        },
        expires_at=read_at + AUDIT_RETENTION,
    )
