"""Child processes of covidtech: started with the settings in their environment, output to
a log file, and stopped the same way everywhere (SIGTERM, a grace period, then SIGKILL).

Used by the demo, the benchmarks, the replay and the tests, which all run workers and APIs as
``python -m cli ...`` children.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from covidtech.settings import Settings

__all__ = ["ROOT", "child", "child_env", "free_port", "spawn", "stop"]

#: The checkout: children run from it, so ``python -m cli`` finds the project.
ROOT = Path(__file__).resolve().parents[1]

Process = subprocess.Popen[bytes]


def child_env(s: Settings, **extra: str) -> dict[str, str]:
    """This process's environment with ``s`` as ``COVIDTECH_*`` variables (and ``extra``)."""
    return {**os.environ, **s.as_env(), **extra}


def free_port() -> int:
    """A TCP port on loopback that nothing listens on now (for a child to listen on)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stop(*procs: Process, grace: float = 30.0) -> None:
    """SIGTERM every process still running, wait up to ``grace`` seconds in all for them to
    exit, then SIGKILL what is left."""
    running = [p for p in procs if p.poll() is None]
    for p in running:
        p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for p in running:
        try:
            p.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def spawn(
    args: Sequence[str],
    log: Path | None,
    env: Mapping[str, str],
    *,
    new_session: bool = False,
) -> Process:
    """Start ``python -m <args>`` from the checkout, stdout and stderr appended to ``log``
    (discarded when None). The caller stops it with :func:`stop`."""
    if log is None:
        return _popen(args, subprocess.DEVNULL, env, new_session)
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:  # the child keeps its own descriptor
        return _popen(args, out, env, new_session)


def _popen(args: Sequence[str], out: Any, env: Mapping[str, str], new_session: bool) -> Process:
    return subprocess.Popen(
        [sys.executable, "-m", *args],
        cwd=ROOT,
        env=dict(env),
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=new_session,
    )


@contextmanager
def child(
    args: Sequence[str],
    log: Path,
    env: Mapping[str, str],
    *,
    grace: float = 30.0,
    new_session: bool = False,
) -> Iterator[Process]:
    """``python -m <args>`` from the checkout, stdout and stderr appended to ``log``; stopped
    by :func:`stop` on leaving. ``new_session``: out of this terminal's process group, so a
    Ctrl-C reaches only the parent, which then stops it in order."""
    proc = spawn(args, log, env, new_session=new_session)
    try:
        yield proc
    finally:
        stop(proc, grace=grace)
