"""Vaccination certificates (docs/certificates.md): the public keys and a verification route,
both public (no token) and rate limited per client address; and the issuing routes.

- ``GET /v1/certificates/keys``: the Ed25519 public keys by key id, cacheable by anyone
  (``public, max-age``, ETag): a verifier fetches them once and checks certificates offline.
- ``POST /v1/certificates/verify`` with ``{"payload": "CT1:..."}``: 200 with ``valid`` and the
  claims, or ``valid: false`` with the refusal reason; a well-formed request about a bad
  certificate is answered, not refused (4xx only for a bad request: not JSON, no payload).

- ``GET /v1/me/certificate`` (the person's own token, ``person:<id>``) and
  ``GET /v1/people/{person_id}/certificate`` (``moh``): a certificate issued now from the
  person's doses (``doses_by_person``), with its QR code as a PNG; audited like every read of a
  person's record.

Verification needs no database: only the keys of :attr:`api.services.Services.certificates`
and the clock, as any offline verifier would.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
from typing import Any

import qrcode
import qrcode.constants
from starlette.responses import Response

from api import auth
from api.edge import Area, Ctx, Operation, invalid_body, json_body
from api.problems import Problem
from api.render import conditional_response, json_response
from domain.certificate import (
    MAX_DOSES,
    MAX_PAYLOAD_LENGTH,
    Verification,
    certificate_doses,
    issue,
    pseudonym,
    verify,
)
from projections import queries

__all__ = ["KEYS_MAX_AGE", "operations", "verification_answer"]

#: How long anyone (browsers, CDNs, verifier apps) may keep the public keys, in seconds. A new
#: key is added well before it signs (rotation, docs/certificates.md), so an hour is safe.
KEYS_MAX_AGE = 3600


def _take(ctx: Ctx) -> None:
    """429 ``rate-limited`` (with Retry-After) unless the client's address may ask now."""
    ctx.take(ctx.services.certificate_limiter, "certificate requests from your address")


async def get_keys(ctx: Ctx) -> Response:
    _take(ctx)
    document = ctx.services.certificates.public.document()
    body = json.dumps(document, separators=(",", ":")).encode()
    return conditional_response(
        ctx.request, body, "application/json", f"public, max-age={KEYS_MAX_AGE}"
    )


def verification_answer(v: Verification) -> dict[str, Any]:
    """The verification route's answer (the CLI prints the same)."""
    return {
        "valid": v.valid,
        "reason": None if v.reason is None else v.reason.value,
        "detail": v.detail or None,
        "claims": None if v.claims is None else v.claims.as_dict(),
    }


async def verify_certificate(ctx: Ctx) -> Response:
    _take(ctx)
    body = await json_body(ctx.request)
    if not isinstance(body, dict):
        raise invalid_body([{"field": "", "message": "the body must be a JSON object"}])
    errors = [
        {"field": name, "message": "unknown field"} for name in sorted(set(body) - {"payload"})
    ]
    payload = body.get("payload")
    if not isinstance(payload, str):
        errors.append({"field": "payload", "message": "the certificate payload, a string"})
    if errors:
        raise invalid_body(errors)
    assert isinstance(payload, str)
    answer = verification_answer(verify(payload, ctx.services.certificates.public, ctx.now))
    return json_response(answer, cache_control="no-store")


# ------------------------------------------------------------------------------ issuing


def qr_png(payload: str) -> bytes:
    """The payload as a QR code PNG (error correction M; alphanumeric mode, as base45 is)."""
    code = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, box_size=4, border=4)
    code.add_data(payload)
    code.make(fit=True)
    out = io.BytesIO()
    code.make_image().get_image().save(out, format="PNG")
    return out.getvalue()


async def certificate_of(ctx: Ctx, person_id: str) -> Response:
    """A certificate issued now from ``person_id``'s doses (404 without any), audited."""
    services = ctx.services
    rows = await queries.vaccinations(services.store, person_id)
    if not rows:
        raise Problem("not-found", "no dose is recorded for this person")
    await ctx.audit(f"certificate:{person_id}", (person_id,))
    first = min(rows, key=lambda r: (r["administered_at"], r["dose_id"]))
    doses = certificate_doses((r["dose_id"], r["administered_at"], r["vaccine"]) for r in rows)
    now = ctx.now
    payload = issue(
        services.certificates,
        subject=pseudonym(services.settings.secret, person_id),
        birth_year=first["birth_year"],
        doses=doses[:MAX_DOSES],
        now=now,
        validity=services.settings.certificate_validity(),
    )
    verified = verify(payload, services.certificates.public, now)
    assert verified.claims is not None, verified  # what was just issued verifies
    png = await asyncio.to_thread(qr_png, payload)
    return json_response(
        {
            "payload": payload,
            "qr_png": base64.b64encode(png).decode(),
            "claims": verified.claims.as_dict(),
        },
        cache_control="private, no-store",
    )


async def my_certificate(ctx: Ctx) -> Response:
    assert ctx.claims is not None
    person = ctx.claims.person
    if person is None:  # reach_of lets only a person-bound token through; kept explicit
        raise Problem("insufficient-scope", "your token is bound to no person")
    return await certificate_of(ctx, person)


async def person_certificate(ctx: Ctx) -> Response:
    return await certificate_of(ctx, ctx.params["person_id"])


def operations() -> tuple[Operation, ...]:
    """The certificate routes: the public keys, verification, issuing."""
    area = Area("certificates", None)
    return (
        area.get(
            "/v1/certificates/keys",
            "getCertificateKeys",
            "The public keys that verify vaccination certificates",
            get_keys,
            response="CertificateKeys",
            caching="aggregate",
            errors=(304, 429),
            description="No token. Ed25519 public keys by key id (base64 of the 32 raw "
            "bytes); every listed key verifies, the first signs new certificates. Cacheable "
            f"by anyone for {KEYS_MAX_AGE} s. Rate limited per client address.",
        ),
        area.op(
            "POST",
            "/v1/certificates/verify",
            "verifyCertificate",
            "Verify a vaccination certificate",
            verify_certificate,
            body="CertificateToVerify",
            response="CertificateVerification",
            caching="none",
            errors=(400, 413, 415, 422, 429),
            description="No token. 200 for any payload: valid with its claims, or "
            "valid=false with the reason (malformed, unknown-version, unknown-key, "
            "bad-signature, not-yet-valid, expired). 4xx only for a request that is not "
            '{"payload": string}; a payload over '
            f"{MAX_PAYLOAD_LENGTH} characters is malformed. Checked with the public keys "
            "alone, as an offline verifier would (docs/certificates.md). Rate limited per "
            "client address.",
        ),
        area.get(
            "/v1/me/certificate",
            "getMyCertificate",
            "The person's own vaccination certificate",
            my_certificate,
            scopes=auth.PERSON,
            response="Certificate",
            audited=True,
            description="For the citizen's own token (person:<id>): a certificate signed now "
            "from their recorded doses (404 without any): the payload, its QR code as a PNG "
            "(base64) and the claims it carries. Audited.",
        ),
        area.get(
            "/v1/people/{person_id}/certificate",
            "getPersonCertificate",
            "Issue a person's vaccination certificate (MOH)",
            person_certificate,
            scopes=auth.MOH,
            response="Certificate",
            audited=True,
            description="A certificate signed now from the person's recorded doses (404 "
            "without any): the payload, its QR code as a PNG (base64) and the claims it "
            "carries. For a health worker printing one on paper. Audited.",
        ),
    )
