"""Commands of the ingest API: ``covidtech token issue`` and ``covidtech ingest-api``.

The ``covidtech`` command registers :data:`token_group` and :data:`ingest_api_command`.
"""

from __future__ import annotations

from datetime import UTC, datetime

import click

from covidtech import settings as settings_mod
from covidtech.settings import Settings, SettingsError
from covidtech.tokens import InvalidScope, Scope, ScopeKind, TokenSigner, parse_ttl
from domain.reference import is_province

__all__ = ["ingest_api_command", "token_group"]

_PROVINCE_SCOPES = (ScopeKind.PROVINCE, ScopeKind.TRACER, ScopeKind.VENUE_ADMIN)


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
    if scope.kind in _PROVINCE_SCOPES and not is_province(scope.value or ""):
        raise click.BadParameter(
            f"{scope}: {scope.kind.value} takes a GSO two-digit province code, e.g. 01",
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
    """Print a signed token (signed with COVIDTECH_SECRET)."""
    try:
        lifetime = parse_ttl(ttl)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--ttl") from e
    parsed = [_scope(s) for s in scopes]
    try:
        token = TokenSigner(_settings().secret).issue(
            subject, parsed, lifetime, now=datetime.now(UTC), grant_id=grant_id
        )
    except ValueError as e:
        raise click.ClickException(str(e)) from e
    click.echo(token)


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
        lifespan="on",
    )
