"""MOH's control of access: grants of scopes to agencies (issued, listed, revoked) and the audit
log of reads of personal data.

A grant is an event on ``grants`` and a row in Cassandra; its token is returned once and never
stored. Revoking one reaches the revocation list of this process at once and of the others
through the topic.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from starlette.responses import Response

from api import auth
from api.edge import (
    MAX_BODY_BYTES,
    REACH_ERRORS,
    Area,
    Ctx,
    Operation,
    day_range,
    invalid_body,
    json_body,
    malformed_page,
    newest_page,
    page,
    page_int,
)
from api.params import Param, date_param, parse_datetime, text_param
from api.problems import Problem
from api.render import iso, iso_or_none, json_response
from covidtech.revocations import GRANT_ISSUED, GRANT_REVOKED
from covidtech.tokens import Claims, InvalidScope, Scope, ScopeKind
from covidtech.topics import GRANTS
from domain import reference
from projections import queries
from projections.access import grant_issued_row, grant_revoked_row
from projections.model import Query, Row
from projections.queries import Segment
from schemas.codec import encode

__all__ = [
    "MAX_AUDIT_DAYS",
    "MAX_BODY_BYTES",
    "create_grant",
    "get_grant",
    "list_audit",
    "list_grants",
    "operations",
    "revoke_grant",
]

#: Longest audit query (one partition per day).
MAX_AUDIT_DAYS = 31


def _grant(r: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    if r.get("revoked_at") is not None:
        status = "revoked"
    elif r.get("expires_at") is not None and r["expires_at"] <= now:
        status = "expired"
    else:
        status = "active"
    return {
        "grant_id": r["grant_id"],
        "token_id": r["token_id"],
        "agency": r["agency"],
        "scopes": list(r["scopes"] or []),
        "purpose": r["purpose"],
        "granted_by": r["granted_by"],
        "granted_at": iso_or_none(r["granted_at"]),
        "expires_at": iso_or_none(r["expires_at"]),
        "status": status,
        "revoked_at": iso_or_none(r.get("revoked_at")),
        "revoked_by": r.get("revoked_by"),
        "revoke_reason": r.get("revoke_reason"),
    }


async def list_audit(ctx: Ctx) -> Response:
    start, end = day_range(ctx, 1, (MAX_AUDIT_DAYS, "the audit log is read"))
    actor, subject = ctx.params["actor"], ctx.params["subject"]
    binding = {"from": start.isoformat(), "to": end.isoformat(), "actor": actor, "subject": subject}
    position = ctx.open_page(binding)
    segments = [
        Segment(d.isoformat(), (Query("audit_log", {"day": d}),))
        for d in queries.days_between(start, end)[::-1]
    ]

    def keep(r: Row) -> bool:
        return (actor is None or r["actor"] == actor) and (
            subject is None or r["subject"] == subject
        )

    rows, nxt = await newest_page(
        ctx, segments, position, time_col="read_at", id_col="audit_id", keep=keep
    )
    items = [
        {
            "audit_id": r["audit_id"],
            "read_at": iso(r["read_at"]),
            "actor": r["actor"],
            "grant_id": r["grant_id"],
            "token_id": r["token_id"],
            "scopes": list(r["scopes"] or []),
            "method": r["method"],
            "route": r["route"],
            "subject": r["subject"],
            "person_ids": list(r["person_ids"] or []),
            "client_address": r["client_address"],
            "status": r["status"],
        }
        for r in rows
    ]
    token = ctx.next_page(binding, nxt)
    return json_response(page(items, token))


_GRANT_FIELDS = {"agency", "scopes", "purpose", "expires_at"}


def _covers(issuer: Claims, scope: Scope) -> bool:
    """Whether a token may hand ``scope`` on: it holds ``moh`` (every scope) or that scope.
    A grant never outranks the token that issued it."""
    return issuer.has(ScopeKind.MOH) or scope in issuer.scopes


async def create_grant(ctx: Ctx) -> Response:
    services = ctx.services
    issuer = ctx.claims
    assert issuer is not None
    body = await json_body(ctx.request)
    if not isinstance(body, dict):
        raise invalid_body([{"field": "", "message": "the body must be a JSON object"}])
    errors: list[dict[str, str]] = []
    for name in sorted(set(body) - _GRANT_FIELDS):
        errors.append({"field": name, "message": "unknown field"})
    agency, purpose = body.get("agency"), body.get("purpose")
    if not isinstance(agency, str) or not 1 <= len(agency) <= 128:
        errors.append({"field": "agency", "message": "a name of 1 to 128 characters"})
    if not isinstance(purpose, str) or not 1 <= len(purpose) <= 500:
        errors.append({"field": "purpose", "message": "a text of 1 to 500 characters"})
    scopes: list[Scope] = []
    raw_scopes = body.get("scopes")
    if not isinstance(raw_scopes, list) or not 1 <= len(raw_scopes) <= 16:
        errors.append({"field": "scopes", "message": "a list of 1 to 16 scopes"})
    else:
        for i, text in enumerate(raw_scopes):
            try:
                if not isinstance(text, str):
                    raise InvalidScope("a scope is a string")
                scope = Scope.parse(text)
            except InvalidScope as e:
                errors.append({"field": f"scopes[{i}]", "message": str(e)})
                continue
            if scope.kind is ScopeKind.PERSON:
                errors.append(
                    {
                        "field": f"scopes[{i}]",
                        "message": "a person's token comes from registration or sign-in "
                        "(POST /v1/people, POST /v1/people/sessions), never from a grant",
                    }
                )
                continue
            province = scope.province_code
            if province is not None and not reference.is_province(province):
                errors.append({"field": f"scopes[{i}]", "message": "unknown province code"})
                continue
            if not _covers(issuer, scope):
                errors.append(
                    {"field": f"scopes[{i}]", "message": "the issuing token does not hold it"}
                )
                continue
            scopes.append(scope)
    now = ctx.now
    expires_at: datetime | None = None
    raw_expiry = body.get("expires_at")
    try:
        if not isinstance(raw_expiry, str):
            raise ValueError("an RFC 3339 date-time")
        expires_at = parse_datetime(raw_expiry)
        longest = timedelta(days=services.config.max_grant_days)
        if expires_at <= now + timedelta(minutes=1):
            raise ValueError("must be in the future")
        if expires_at > now + longest:
            raise ValueError(f"must be within {longest.days} days")
        if expires_at > issuer.expires_at:
            raise ValueError(
                "must not be later than the issuing token's own expiry "
                f"({issuer.expires_at.isoformat()})"
            )
    except ValueError as e:
        errors.append({"field": "expires_at", "message": str(e)})
    if errors:
        raise invalid_body(errors)
    assert isinstance(agency, str) and isinstance(purpose, str) and expires_at is not None
    grant_id = uuid.uuid4().hex
    token_id = secrets.token_urlsafe(12)
    try:
        token = services.signer.issue(
            agency,
            scopes,
            expires_at - now,
            now=now,
            grant_id=grant_id,
            token_id=token_id,
        )
    except (ValueError, InvalidScope) as e:
        raise invalid_body([{"field": "agency", "message": str(e)}]) from e
    event = {
        "event_id": f"{grant_id}:issued",
        "grant_id": grant_id,
        "token_id": token_id,
        "agency": agency,
        "scopes": sorted(str(s) for s in scopes),
        "purpose": purpose,
        "granted_by": issuer.subject,
        "granted_by_grant_id": issuer.grant_id,
        "granted_by_token_id": issuer.token_id,
        "granted_at": now,
        # the token's own expiry (whole seconds), so the record says what the token says
        "expires_at": now.replace(microsecond=0)
        + timedelta(seconds=max(1, int((expires_at - now).total_seconds()))),
    }
    await services.event_log.publish(
        services.settings.topic(GRANTS.name), grant_id, encode(GRANT_ISSUED, event)
    )
    services.revocations.issued(grant_id, issuer.grant_id or issuer.token_id)
    await services.store.apply([grant_issued_row(event)])
    services.metrics.grants_issued.inc()
    row = {**grant_issued_row(event).row, "revoked_at": None}
    return json_response(
        {**_grant(row, now), "token": token},
        status=201,
        cache_control="no-store",
        headers={"Location": f"/v1/grants/{grant_id}"},
    )


async def list_grants(ctx: Ctx) -> Response:
    binding: dict[str, Any] = {}
    position = ctx.open_page(binding)
    rows = await queries.all_grants(ctx.services.store)
    start = page_int(position.get("offset")) if position is not None else 0
    if start < 0:
        raise malformed_page()
    limit = ctx.page_limit()
    chunk = rows[start : start + limit]
    token = None
    if start + limit < len(rows):
        token = ctx.mint_page(binding, {"offset": start + limit})
    return json_response(page([_grant(r, ctx.now) for r in chunk], token), cache_control="no-store")


async def get_grant(ctx: Ctx) -> Response:
    row = await queries.grant(ctx.services.store, ctx.params["grant_id"])
    if row is None:
        raise Problem("not-found", "no such grant")
    return json_response(_grant(row, ctx.now), cache_control="no-store")


async def revoke_grant(ctx: Ctx) -> Response:
    services = ctx.services
    grant_id = ctx.params["grant_id"]
    row = await queries.grant(services.store, grant_id)
    if row is None:
        raise Problem("not-found", "no such grant")
    if row.get("revoked_at") is None:
        claims = ctx.claims
        assert claims is not None
        event = {
            "event_id": f"{grant_id}:revoked",
            "grant_id": grant_id,
            "token_id": row["token_id"],
            "revoked_by": claims.subject,
            "revoked_at": ctx.now,
            "reason": ctx.params["reason"],
        }
        await services.event_log.publish(
            services.settings.topic(GRANTS.name), grant_id, encode(GRANT_REVOKED, event)
        )
        services.revocations.revoke((grant_id, row["token_id"]))
        mutation = grant_revoked_row(event)
        await services.store.apply([mutation])
        services.metrics.grants_revoked.inc()
        row = {**row, **mutation.row}
    return json_response(_grant(row, ctx.now), cache_control="no-store")


def operations(paging: tuple[Param, ...]) -> tuple[Operation, ...]:
    """MOH's operations; ``paging``: the page parameters of the config."""
    area = Area("MOH", auth.MOH)
    return (
        area.get(
            "/v1/audit",
            "listAudit",
            "Reads of personal data, newest first",
            list_audit,
            params=(
                date_param("from", "First local day (default: to)."),
                date_param("to", "Last local day (default today)."),
                text_param("actor", 128, "Only reads by this token subject."),
                text_param("subject", 256, "Only reads of this subject, e.g. person:<id>."),
                *paging,
            ),
            response="AuditPage",
            errors=REACH_ERRORS,
        ),
        area.op(
            "POST",
            "/v1/grants",
            "createGrant",
            "Grant an agency scopes until a date",
            create_grant,
            response="IssuedGrant",
            status=201,
            body="GrantRequest",
            errors=(400, 401, 403, 413, 415, 422, 503),
            description="Records the grant (event on `grants`, row in Cassandra) and returns the "
            "token, once: it is not stored.",
        ),
        area.get(
            "/v1/grants",
            "listGrants",
            "Grants, newest first",
            list_grants,
            params=paging,
            response="GrantPage",
            errors=REACH_ERRORS,
        ),
        area.get(
            "/v1/grants/{grant_id}",
            "getGrant",
            "One grant",
            get_grant,
            response="Grant",
        ),
        area.op(
            "DELETE",
            "/v1/grants/{grant_id}",
            "revokeGrant",
            "Revoke a grant: its token is refused by both APIs within seconds",
            revoke_grant,
            params=(text_param("reason", 500, "Why (recorded)."),),
            response="Grant",
            description="Idempotent: revoking a revoked grant answers it unchanged.",
        ),
    )
