"""The whole system for end-to-end tests: a stream worker, the ingest API and the read API as
child processes on free ports, against this test's own topics and keyspace (``isolated``).

Each process logs to ``<COVIDTECH_HOME>/logs/e2e-<app id>-<name>.log``; a failing test names
the logs to read.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from covidtech import processes
from covidtech.processes import free_port
from covidtech.settings import Settings, with_overrides


def child_env(s: Settings, **extra: str) -> dict[str, str]:
    """The environment of a ``covidtech`` child process running with settings ``s``."""
    return {**os.environ, **s.as_env(), **extra}


@dataclass
class System:
    """The running processes of one test and where they answer."""

    settings: Settings
    ingest_url: str
    read_url: str
    logs: dict[str, Path] = field(default_factory=dict)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise AssertionError(f"{name} exited with {proc.returncode}; see {self.logs[name]}")


@contextlib.contextmanager
def _child(
    system: System, name: str, args: list[str], env: dict[str, str]
) -> Iterator[subprocess.Popen[bytes]]:
    path = system.settings.home / "logs" / f"e2e-{system.settings.app_id}-{name}.log"
    with processes.child(["cli", *args], path, env) as proc:
        system.procs[name], system.logs[name] = proc, path
        yield proc


def _wait_ready(system: System, url: str, within: float = 90.0) -> None:
    deadline = time.monotonic() + within
    while True:
        system.check_alive()
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2).status_code == 200:
                return
        if time.monotonic() > deadline:
            raise AssertionError(f"{url} not ready within {within}s; logs: {system.logs}")
        time.sleep(0.3)


@contextlib.contextmanager
def running_system(s: Settings) -> Iterator[System]:
    """Worker, ingest API and read API for ``s``, started in parallel, stopped in reverse."""
    s = with_overrides(s, worker_web_port=free_port())
    ingest_port, read_port = free_port(), free_port()
    system = System(s, f"http://127.0.0.1:{ingest_port}", f"http://127.0.0.1:{read_port}")
    # Aggregates are recomputed every 2 s instead of 15 s: the test reads them right after
    # the worker caught up, and must not be answered from before.
    env = child_env(s, COVIDTECH_READ_AGGREGATE_CACHE_SECONDS="2")
    with (
        _child(system, "worker", ["worker"], env),
        _child(system, "ingest-api", ["ingest-api", "--port", str(ingest_port)], env),
        _child(
            system,
            "read-api",
            ["read-api", "--host", "127.0.0.1", "--port", str(read_port), "--log-level", "warning"],
            env,
        ),
    ):
        _wait_ready(system, f"{system.ingest_url}/readyz")
        _wait_ready(system, f"{system.read_url}/readyz")
        yield system


@pytest.fixture
def system(isolated: Settings) -> Iterator[System]:
    with running_system(isolated) as running:
        yield running
