"""``covidtech demo``: the whole system on a simulated outbreak, stopped cleanly by Ctrl-C.

Starts Kafka and Cassandra (``infra up``), a stream worker and both APIs as child processes,
waits until each answers, prints where to look with a token for each kind of user, then runs
the simulator (the last two days back-filled, then live check-ins). Ctrl-C stops the
simulator, the processes it started and the services it started, in that order.
Coverage per hundred divides by the simulated population (``population_scale``), not the
census.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta

import httpx

from covidtech import processes
from covidtech.processes import child_env
from covidtech.settings import Settings, with_overrides
from simulator.model import Outbreak, population_scale

Log = Callable[[str], None]


@contextmanager
def child(name: str, args: list[str], s: Settings, log: Log) -> Iterator[subprocess.Popen[bytes]]:
    """A ``covidtech`` subcommand as a child process, its output in the logs folder."""
    path = s.home / "logs" / f"{name}.log"
    try:
        with processes.child(["cli", *args], path, child_env(s), new_session=True) as proc:
            log(f"started {name} (pid {proc.pid}, log {path})")
            yield proc
    finally:
        log(f"stopped {name}")


def wait_ready(url: str, proc: subprocess.Popen[bytes], what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}; see its log")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2).status_code == 200:
                return
        time.sleep(0.5)
    raise RuntimeError(f"{what} not ready at {url} after {timeout:.0f}s")


def user_tokens(s: Settings, province: str = "79") -> dict[str, tuple[str, str]]:
    """(scope, token) per kind of user, valid 7 days."""
    ttl = timedelta(days=7)
    kinds = {
        "MOH analyst": "moh",
        f"province {province} health department": f"province:{province}",
        f"contact tracer, province {province}": f"tracer:{province}",
        f"venue owner, province {province}": f"venue-admin:{province}",
        "citizen app (registers people; each gets a person token)": "app",
        f"sample site, province {province}": f"site:demo-site-{province}@{province}",
        f"lab, province {province}": f"lab:demo-lab-{province}@{province}",
    }
    return {
        k: (scope, s.token_signer().issue(f"demo-{scope.replace(':', '-')}", [scope], ttl))
        for k, scope in kinds.items()
    }


def demo_settings(s: Settings, outbreak: Outbreak) -> Settings:
    """``s`` with per-hundred denominators scaled to the simulated population (unless
    ``population_scale`` was set): 3,000 people in the eight largest provinces would otherwise
    be "0.0013 per 100" of their census population."""
    if s.population_scale != 1.0:
        return s
    return with_overrides(s, population_scale=population_scale(outbreak))


def _stop_on_signals() -> None:
    """Ctrl-C and SIGTERM both stop the demo cleanly (a shell starting it in the background
    hands it SIGINT ignored; restore Python's handler)."""

    def interrupt(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, interrupt)


def run_demo(s: Settings, *, people: int, rate: float, seed: int, log: Log = print) -> None:
    from infra import lifecycle, services

    _stop_on_signals()
    from simulator.client import simulate

    outbreak = Outbreak(people=people)
    s = demo_settings(s, outbreak)

    started_services = [
        svc.name
        for svc in (services.kafka(s), services.cassandra(s))
        if services.running_pid(svc, s) is None
    ]
    lifecycle.up(s, log=log)
    ingest = f"http://127.0.0.1:{s.ingest_port}"
    read = f"http://127.0.0.1:{s.read_port}"
    try:
        with (
            child("worker", ["worker"], s, log),
            child("ingest-api", ["ingest-api"], s, log) as ingest_proc,
            child("read-api", ["read-api", "--host", "127.0.0.1"], s, log) as read_proc,
        ):
            wait_ready(f"{ingest}/readyz", ingest_proc, "ingest API")
            wait_ready(f"{read}/healthz", read_proc, "read API")
            tokens = user_tokens(s)
            moh = tokens["MOH analyst"][1]
            log("")
            log("covidtech is running:")
            log(f"  dashboard (MOH)   {read}/#token={moh}")
            log(f"  read API          {read}/openapi.json")
            log(f"  ingest API        {ingest}/openapi.json")
            log(f"  worker metrics    http://127.0.0.1:{s.worker_web_port}/metrics")
            log(f"  logs              {s.home / 'logs'}")
            log("tokens (Authorization: Bearer ...), one per kind of user:")
            for kind, (scope, token) in tokens.items():
                log(f"  {kind:<38} {scope:<16} {token}")
            log("")
            asyncio.run(
                simulate(
                    s,
                    ingest,
                    outbreak,
                    seed=seed,
                    rate=rate,
                    live=True,
                    progress=log,
                )
            )
    except KeyboardInterrupt:
        log("\nstopping ...")
    finally:
        if started_services:
            lifecycle.down(s, log=log)
