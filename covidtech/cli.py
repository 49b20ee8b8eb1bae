"""The ``covidtech`` command: operators' entry point to every process of the system."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from covidtech import settings as settings_mod
from covidtech.settings import Settings, SettingsError


def _settings() -> Settings:
    try:
        return settings_mod.get()
    except SettingsError as e:
        raise click.ClickException(f"bad setting: {e}") from e


@click.group()
def main() -> None:
    """covidtech: event-sourced outbreak response (check-in, testing, vaccination)."""


# ------------------------------------------------------------------ infra


@main.group()
def infra() -> None:
    """Start, stop and inspect the local Kafka and Cassandra."""


@infra.command("up")
@click.option("--no-schema", is_flag=True, help="Skip topic creation and CQL migrations.")
def infra_up(no_schema: bool) -> None:
    """Resolve jars if missing, start Kafka and Cassandra, create topics, migrate."""
    from infra.lifecycle import up
    from infra.services import InfraError

    s = _settings()
    try:
        t = up(s, log=click.echo, with_schema=not no_schema)
    except InfraError as e:
        raise click.ClickException(str(e)) from e
    click.echo(f"infra up in {t.total_s:.1f}s")


@infra.command("down")
def infra_down() -> None:
    """Stop Kafka and Cassandra cleanly."""
    from infra.lifecycle import down

    down(_settings(), log=click.echo)


@infra.command("status")
def infra_status() -> None:
    """Say what runs where."""
    from infra.lifecycle import status

    s = _settings()
    rows = status(s)
    cols = ["service", "pid", "port", "answers", "rss_mib", "data"]
    widths = {c: max(len(c), *(len(r[c]) for r in rows)) for c in cols}
    click.echo("  ".join(c.ljust(widths[c]) for c in cols))
    for r in rows:
        click.echo("  ".join(r[c].ljust(widths[c]) for c in cols))
    if not all(r["answers"] == "yes" for r in rows):
        sys.exit(3)


@infra.command("reset")
@click.option("--jars", is_flag=True, help="Also delete the resolved jars.")
@click.confirmation_option(prompt="Stop the services and delete all their data?")
def infra_reset(jars: bool) -> None:
    """Stop the services and wipe their data."""
    from infra.lifecycle import reset

    reset(_settings(), log=click.echo, jars=jars)


@main.command("worker")
@click.option(
    "--loglevel",
    default="warn",
    show_default=True,
    type=click.Choice(["crit", "error", "warn", "info", "debug"]),
)
def worker(loglevel: str) -> None:
    """Run a stream worker (Faust); start more for more partitions in parallel."""
    from streams.worker import run_worker

    run_worker(_settings(), loglevel=loglevel)


@main.command("replay")
@click.option("--into", "keyspace", required=True, help="Fresh keyspace to rebuild into.")
@click.option(
    "--via-worker",
    is_flag=True,
    help="Replay through a worker process (its own group and derived topics) instead of "
    "folding the log in memory on this machine; slower, but its memory is that of the workers.",
)
def replay_cmd(keyspace: str, via_worker: bool) -> None:
    """Rebuild every projection from the start of the log into a fresh keyspace."""
    if via_worker:
        from streams.replay import replay

        replay(_settings(), keyspace, log=click.echo)
    else:
        from streams.rebuild import rebuild

        rebuild(_settings(), keyspace, log=click.echo)


@main.command("simulate")
@click.option("--people", default=2000, show_default=True, help="Simulated population.")
@click.option("--venues", default=120, show_default=True)
@click.option("--provinces", default=8, show_default=True, help="Largest N provinces.")
@click.option("--days", default=2.0, show_default=True, help="Days back-filled before now.")
@click.option("--rate", default=500.0, show_default=True, help="Requests per second.")
@click.option("--seed", default=1, show_default=True)
@click.option("--live/--no-live", default=False, help="Keep sending fresh check-ins.")
@click.option("--duration", type=float, default=None, help="Seconds of live traffic.")
@click.option(
    "--record",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write every request to this JSON-lines file.",
)
@click.option(
    "--from-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Send the requests recorded in this file instead.",
)
@click.option("--url", default=None, help="Ingest API (default: localhost, ingest port).")
def simulate_cmd(
    people: int,
    venues: int,
    provinces: int,
    days: float,
    rate: float,
    seed: int,
    live: bool,
    duration: float | None,
    record: Path | None,
    from_file: Path | None,
    url: str | None,
) -> None:
    """Send a seeded, deterministic outbreak through the ingest API."""
    import asyncio

    import httpx

    from simulator.client import replay_file, simulate
    from simulator.model import Outbreak

    s = _settings()
    base = url or f"http://127.0.0.1:{s.ingest_port}"
    params = Outbreak(people=people, venues=venues, provinces=provinces, days=days)
    try:
        if from_file:
            stats = asyncio.run(replay_file(s, base, from_file, rate, progress=click.echo))
        else:
            stats = asyncio.run(
                simulate(
                    s,
                    base,
                    params,
                    seed=seed,
                    rate=rate,
                    live=live,
                    duration=duration,
                    record=record,
                    progress=click.echo,
                )
            )
    except httpx.ConnectError as e:
        raise click.ClickException(
            f"the ingest API at {base} is not running ({e}); start it with "
            "`covidtech ingest-api` (after `covidtech infra up` and `covidtech worker`), "
            "or run everything with `covidtech demo`"
        ) from e
    click.echo(stats.line())


@main.command("demo")
@click.option("--people", default=3000, show_default=True, help="Simulated population.")
@click.option("--rate", default=300.0, show_default=True, help="Requests per second.")
@click.option("--seed", default=1, show_default=True)
def demo(people: int, rate: float, seed: int) -> None:
    """Run everything on a simulated outbreak; print where to look; Ctrl-C stops it all."""
    from covidtech.demo import run_demo

    run_demo(_settings(), people=people, rate=rate, seed=seed, log=click.echo)


@main.group("venue")
def venue() -> None:
    """Venue owners' tasks."""


@venue.command("register")
@click.option("--name", required=True)
@click.option("--address", required=True)
@click.option("--province", required=True, help="GSO province code, e.g. 79.")
@click.option("--district", required=True, help="GSO district code, e.g. 760.")
@click.option("--category", default="other", show_default=True)
@click.option(
    "--dwell",
    "dwell_minutes",
    type=int,
    default=60,
    show_default=True,
    help="Default minutes of a visit without a check-out scan (1-720).",
)
@click.option(
    "--poster",
    "poster",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Where to save the poster (.png or .svg).",
)
@click.option("--url", default=None, help="Ingest API (default: localhost, ingest port).")
def venue_register(
    name: str,
    address: str,
    province: str,
    district: str,
    category: str,
    dwell_minutes: int,
    poster: Path | None,
    url: str | None,
) -> None:
    """Register a venue through the ingest API and save its QR poster."""
    from datetime import timedelta

    import httpx

    from covidtech.tokens import issue

    s = _settings()
    base = url or f"http://127.0.0.1:{s.ingest_port}"
    token = issue(s.secret, "covidtech-cli", [f"venue-admin:{province}"], timedelta(minutes=10))
    headers = {"Authorization": f"Bearer {token}"}
    try:
        r = httpx.post(
            f"{base}/v1/venues",
            headers=headers,
            timeout=30,
            json={
                "name": name,
                "address": address,
                "province": province,
                "district": district,
                "category": category,
                "default_dwell_minutes": dwell_minutes,
            },
        )
    except httpx.HTTPError as e:
        raise click.ClickException(f"the ingest API at {base} did not answer: {e}") from e
    if r.status_code != 201:
        raise click.ClickException(f"{r.status_code}: {r.text}")
    body = r.json()
    target = poster or Path(f"poster-{body['venue_id']}.png")
    kind = "svg" if target.suffix == ".svg" else "png"
    r = httpx.get(f"{base}/v1/venues/{body['venue_id']}/poster.{kind}", headers=headers, timeout=30)
    if r.status_code != 200:
        raise click.ClickException(f"poster: {r.status_code}: {r.text}")
    target.write_bytes(r.content)
    click.echo(f"venue_id  {body['venue_id']}")
    click.echo(f"venue_qr  {body['venue_qr']}")
    click.echo(f"poster    {target}")


@main.command("settings")
def show_settings() -> None:
    """Print the effective settings (secrets masked)."""
    for k, v in _settings().describe().items():
        click.echo(f"COVIDTECH_{k.upper()}={v}")


def _register_api_commands() -> None:
    from api.cli import read_api
    from producers.cli import ingest_api_command, token_group

    main.add_command(token_group)
    main.add_command(ingest_api_command)
    main.add_command(read_api)


_register_api_commands()

if __name__ == "__main__":
    main()
