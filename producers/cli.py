"""Commands of the ingest API: ``covidtech token issue`` and ``covidtech ingest-api``.

The ``covidtech`` command registers :data:`token_group` and :data:`ingest_api_command`.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

import click

from covidtech import settings as settings_mod
from covidtech.settings import Settings, SettingsError, parse_duration
from covidtech.tokens import InvalidScope, Scope, parse_ttl
from covidtech.web import KEEP_ALIVE_S
from domain.reference import is_province

__all__ = ["ingest_api_command", "token_group"]


def _settings() -> Settings:
    try:
        return settings_mod.get()
    except SettingsError as e:
        raise click.ClickException(f"bad setting: {e}") from e


def _scope(text: str) -> Scope:
    try:
        scope = Scope.parse(text)
    except InvalidScope as e:
        raise click.BadParameter(str(e), param_hint="--scope") from e
    province = scope.province_code
    if province is not None and not is_province(province):
        raise click.BadParameter(
            f"{scope}: {province} is not a GSO two-digit province code, e.g. 01",
            param_hint="--scope",
        )
    return scope


@click.group("token")
def token_group() -> None:
    """Issue bearer tokens for the APIs."""


@token_group.command("issue")
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    required=True,
    help="moh, app, province:<code>, tracer:<code>, venue-admin:<code>, site:<id>, lab:<id>, "
    "institution:<id> (repeatable).",
)
@click.option("--ttl", default="12h", show_default=True, help="Lifetime: 90s, 30m, 12h, 7d.")
@click.option("--subject", required=True, help="Who the token is for (logged, audited).")
@click.option("--grant-id", default=None, help="Grant the token belongs to (for revocation).")
def token_issue(scopes: tuple[str, ...], ttl: str, subject: str, grant_id: str | None) -> None:
    """Print a signed token (signed with COVIDTECH_SECRET), valid at most
    COVIDTECH_TOKEN_MAX_TTL. Its id (``jti``) is printed on stderr: `covidtech token revoke`
    takes it."""
    settings = _settings()
    try:
        lifetime = parse_ttl(ttl)
        longest = parse_duration(settings.token_max_ttl)
        if lifetime > longest:
            raise ValueError(
                f"at most {settings.token_max_ttl} (COVIDTECH_TOKEN_MAX_TTL); "
                "issue longer-lived access as a grant (POST /v1/grants)"
            )
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--ttl") from e
    parsed = [_scope(s) for s in scopes]
    token_id = secrets.token_urlsafe(12)
    try:
        token = settings.token_signer().issue(
            subject,
            parsed,
            lifetime,
            now=datetime.now(UTC),
            grant_id=grant_id,
            token_id=token_id,
        )
    except ValueError as e:
        raise click.ClickException(str(e)) from e
    click.echo(f"token id {token_id} (revoke: covidtech token revoke {token_id})", err=True)
    click.echo(token)


@token_group.command("revoke")
@click.argument("token_id")
@click.option("--reason", default=None, help="Why (kept with the revocation).")
@click.option("--by", "revoked_by", default="cli", show_default=True, help="Who revokes it.")
def token_revoke(token_id: str, reason: str | None, revoked_by: str) -> None:
    """Revoke a token issued by `covidtech token issue` (its id, printed when issued), and
    with it every grant it issued. Both APIs refuse it within seconds (the grants topic)."""
    import asyncio

    from covidtech import kafka_clients
    from covidtech.revocations import GRANT_REVOKED
    from covidtech.topics import GRANTS
    from schemas.codec import encode

    settings = _settings()
    event = {
        "event_id": f"{token_id}:revoked",
        "grant_id": token_id,
        "token_id": token_id,
        "revoked_by": revoked_by,
        "revoked_at": datetime.now(UTC),
        "reason": reason,
    }

    async def publish() -> None:
        producer = kafka_clients.producer(settings, acks="all")
        await producer.start()
        try:
            await producer.send_and_wait(
                settings.topic(GRANTS.name), encode(GRANT_REVOKED, event), key=token_id.encode()
            )
        finally:
            await producer.stop()

    asyncio.run(publish())
    click.echo(f"revoked token {token_id}")


@click.command("ingest-api")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=int, default=None, help="Port (default: COVIDTECH_INGEST_PORT).")
@click.option("--workers", type=int, default=1, show_default=True, help="Worker processes.")
@click.option("--log-level", default="warning", show_default=True)
def ingest_api_command(host: str, port: int | None, workers: int, log_level: str) -> None:
    """Serve the ingest API with uvicorn."""
    import uvicorn

    s = _settings()
    uvicorn.run(
        "producers.app:app_from_env",
        factory=True,
        host=host,
        port=port or s.ingest_port,
        workers=workers,
        log_level=log_level,
        access_log=False,
        timeout_keep_alive=KEEP_ALIVE_S,
        lifespan="on",
    )
