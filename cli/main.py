"""The ``covidtech`` command: operators' entry point to every process of the system."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click

from covidtech import settings as settings_mod
from covidtech.settings import Settings, SettingsError

if TYPE_CHECKING:
    from domain.certificate import PublicKeys


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


_NODES = click.option(
    "--nodes",
    type=click.IntRange(1, 9),
    default=None,
    help="Brokers and Cassandra nodes of the local cluster, on 127.0.0.1 .. 127.0.0.N "
    "(default: COVIDTECH_NODES, 1). Export COVIDTECH_NODES for the workers and APIs too.",
)


def _infra_settings(nodes: int | None) -> Settings:
    """The settings, with ``--nodes`` applied as if COVIDTECH_NODES were set."""
    import os

    if nodes is None:
        return _settings()
    try:
        return settings_mod.load({**os.environ, "COVIDTECH_NODES": str(nodes)})
    except SettingsError as e:
        raise click.ClickException(f"bad setting: {e}") from e


@infra.command("up")
@click.option("--no-schema", is_flag=True, help="Skip topic creation and CQL migrations.")
@_NODES
def infra_up(no_schema: bool, nodes: int | None) -> None:
    """Resolve jars if missing, start Kafka and Cassandra, create topics, migrate."""
    from infra.lifecycle import up
    from infra.services import InfraError

    s = _infra_settings(nodes)
    try:
        t = up(s, log=click.echo, with_schema=not no_schema)
    except InfraError as e:
        raise click.ClickException(str(e)) from e
    click.echo(f"infra up in {t.total_s:.1f}s")


@infra.command("down")
@_NODES
def infra_down(nodes: int | None) -> None:
    """Stop Kafka and Cassandra cleanly."""
    from infra.lifecycle import down

    down(_infra_settings(nodes), log=click.echo)


@infra.command("status")
@_NODES
def infra_status(nodes: int | None) -> None:
    """Say what runs where."""
    from infra.lifecycle import status

    s = _infra_settings(nodes)
    rows = status(s)
    cols = ["service", "pid", "address", "answers", "rss_mib", "data"]
    widths = {c: max(len(c), *(len(r[c]) for r in rows)) for c in cols}
    click.echo("  ".join(c.ljust(widths[c]) for c in cols))
    for r in rows:
        click.echo("  ".join(r[c].ljust(widths[c]) for c in cols))
    if not all(r["answers"] == "yes" for r in rows):
        sys.exit(3)


@infra.command("reset")
@click.option("--jars", is_flag=True, help="Also delete the resolved jars.")
@click.confirmation_option(prompt="Stop the services and delete all their data?")
@_NODES
def infra_reset(jars: bool, nodes: int | None) -> None:
    """Stop the services and wipe their data."""
    from infra.lifecycle import reset

    reset(_infra_settings(nodes), log=click.echo, jars=jars)


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


@main.command("status")
@click.option("--group", default=None, help="Consumer group (default: the workers', the app id).")
def status_cmd(group: str | None) -> None:
    """Consumer lag of the worker group per topic it reads: end offsets minus committed
    offsets, summed over partitions (source topics first, then derived ones)."""
    import asyncio

    from covidtech.topics import SOURCE_TOPICS
    from streams.handlers import all_handlers
    from streams.replay import group_lag

    s = _settings()
    group = group or s.app_id
    names = sorted({t for h in all_handlers() for t in h.topics})
    sources = {t.name for t in SOURCE_TOPICS}
    names.sort(key=lambda n: (n not in sources, n))
    partitions = asyncio.run(group_lag(s, group))
    click.echo(f"consumer group {group} ({s.kafka_bootstrap})")
    click.echo(f"  {'topic':<28} {'kind':<8} {'end':>10} {'committed':>10} {'lag':>8}")
    total = 0
    for n in names:
        mine = [p for tp, p in partitions.items() if tp.topic == s.topic(n)]
        end = sum(p.end for p in mine)
        lag = sum(p.lag for p in mine)
        total += lag
        kind = "source" if n in sources else "derived"
        click.echo(f"  {n:<28} {kind:<8} {end:>10} {end - lag:>10} {lag:>8}")
    click.echo(f"  total lag {total}")


@main.command("check")
@click.option("--since", default="1h", show_default=True, help="Window: 30m, 6h, 2d, ...")
@click.option("--show", default=10, show_default=True, help="Missing events listed per topic.")
def check_cmd(since: str, show: int) -> None:
    """Check that the read models hold the rows of the events appended in a window (run it
    once the workers have caught up). Exits 1 when rows are missing."""
    import asyncio

    from covidtech.settings import parse_duration
    from projections.cassandra import CassandraStore
    from streams.check import check

    try:
        window = parse_duration(since)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--since") from e
    s = _settings()
    store = CassandraStore.from_settings(s)
    try:
        report = asyncio.run(check(s, store, window))
    finally:
        store.close()
    click.echo(f"events since {report.since.isoformat(timespec='seconds')}:")
    for name, t in report.topics.items():
        click.echo(
            f"  {name:<9} {t.events:>9} read {t.checked:>9} checked {len(t.missing):>7} missing"
        )
        for line in t.missing[:show]:
            click.echo(f"    {line}")
    if report.missing:
        click.echo(f"{report.missing} events without their rows: `covidtech replay` rebuilds them")
        sys.exit(1)


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
@click.option(
    "--reproduction-number",
    "-R",
    type=float,
    default=None,
    help="R of a branching-process epidemic (gamma generation interval 4.7/2.9 d); "
    "default: spread through overlapping visits.",
)
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
    reproduction_number: float | None,
) -> None:
    """Send a seeded, deterministic outbreak through the ingest API."""
    import asyncio

    import httpx

    from simulator.client import replay_file, simulate
    from simulator.model import Outbreak

    s = _settings()
    base = url or f"http://127.0.0.1:{s.ingest_port}"
    params = Outbreak(
        people=people,
        venues=venues,
        provinces=provinces,
        days=days,
        reproduction_number=reproduction_number,
    )
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
    from cli.demo import run_demo

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

    s = _settings()
    base = url or f"http://127.0.0.1:{s.ingest_port}"
    token = s.token_signer().issue(
        "covidtech-cli", [f"venue-admin:{province}"], timedelta(minutes=10)
    )
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


class _CannotVerify(click.ClickException):
    """The keys could not be had: neither valid nor refused (exit code 2)."""

    exit_code = 2


def _public_keys(source: str | None) -> PublicKeys:
    """The public keys: from the read API's key endpoint (a URL), a file holding its answer,
    or the local settings (``COVIDTECH_CERT_KEYS``)."""
    from domain.certificate import PublicKeys

    if source is None:
        return _settings().certificate_keys().public
    if source.startswith(("http://", "https://")):
        import httpx

        url = (
            source
            if source.rstrip("/").endswith("/keys")
            else (source.rstrip("/") + "/v1/certificates/keys")
        )
        try:
            r = httpx.get(url, timeout=10)
            r.raise_for_status()
            document = r.json()
        except (httpx.HTTPError, ValueError) as e:
            raise _CannotVerify(f"cannot fetch the public keys from {url}: {e}") from e
    else:
        try:
            document = json.loads(Path(source).read_text())
        except (OSError, ValueError) as e:
            raise _CannotVerify(f"cannot read the public keys from {source}: {e}") from e
    try:
        return PublicKeys.from_document(document)
    except ValueError as e:
        raise _CannotVerify(f"not a public key document: {e}") from e


@main.command("verify")
@click.argument("payload")
@click.option(
    "--keys",
    "keys_from",
    default=None,
    metavar="URL_OR_FILE",
    help="Public keys: the read API (http://host:8002, or its /v1/certificates/keys URL), or "
    "a file holding that answer. Default: the local settings' COVIDTECH_CERT_KEYS.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the answer as JSON.")
def verify_cmd(payload: str, keys_from: str | None, as_json: bool) -> None:
    """Verify a vaccination certificate offline (PAYLOAD: CT1:..., or - to read stdin).

    Exit code 0: valid; 1: refused (the reason is printed); 2: the keys could not be had.
    """
    from api.routes.certificates import verification_answer
    from domain.certificate import verify

    text = sys.stdin.read().strip() if payload == "-" else payload
    keys = _public_keys(keys_from)
    v = verify(text, keys, datetime.now(UTC))
    answer = verification_answer(v)
    if as_json:
        click.echo(json.dumps(answer, ensure_ascii=False, indent=2))
    elif v.claims is not None:
        c = answer["claims"]
        complete = "fully vaccinated" if c["fully_vaccinated"] else "not fully vaccinated"
        n = len(c["doses"])
        doses = f"{n} dose{'s' if n > 1 else ''}, primary series of {c['doses_to_complete']}"
        click.echo(f"valid: {complete} ({doses})")
        click.echo(f"person      {c['subject']} (born {c['birth_year']})")
        for d in c["doses"]:
            name = d["vaccine_name"] or "unknown product"
            click.echo(f"dose {d['number']:<6} {d['date']}  {d['vaccine']} - {name}")
        click.echo(f"issued      {c['issued_at']} (key {c['kid']})")
        click.echo(f"expires     {c['expires_at']}")
    else:
        click.echo(f"refused: {answer['reason']}: {answer['detail']}")
    sys.exit(0 if v.valid else 1)


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
