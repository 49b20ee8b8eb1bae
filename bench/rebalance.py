"""Stress of the worker group's offset commits across rebalances (not in CI).

    python -m bench.rebalance [--runs 30] [--workers 2 3]

Each run, on fresh topics and keyspace: N workers start; a third of a town's events is
published; one more worker joins; another third; the first worker leaves (SIGTERM); the
last third. Then it records how long after the last publish the group had committed every
partition's end offset, and whether the projections equal the in-process oracle's. Before the
worker committed from its commit records, 9 of 23 runs with two workers left a partition
thousands of offsets behind for minutes. Target: every run caught up, within 10 s of the
projections being complete (the CI test's bound).
"""

from __future__ import annotations

import argparse
import signal
import statistics
import time
from contextlib import ExitStack

from bench.common import drop_isolated, isolated_settings
from covidtech.processes import free_port
from covidtech.settings import Settings
from tests.integration.worker_harness import (
    comparable,
    expected_rows,
    publish_sync,
    snapshot,
    stable_members,
    uncommitted,
    worker,
)
from tests.scenarios import outbreak_at_venue, town
from tests.support import eventually, run_coroutine

CAUGHT_UP_WITHIN = 120.0  # a run not caught up by then counts as stalled


def members(s: Settings, n: int) -> None:
    """Until the group is stable with ``n`` members."""
    eventually(
        lambda: run_coroutine(stable_members(s)) == n, timeout=120, interval=0.5, what="group"
    )


def one_run(workers: int, seed: int) -> tuple[bool, float, float, bool]:
    """(caught up, seconds from last publish to caught up, to projections complete, equal)."""
    s = isolated_settings("r")
    try:
        events = town(seed, people=300) + outbreak_at_venue("z")
        want = comparable(expected_rows(events))
        third = len(events) // 3
        with ExitStack() as stack:
            first, *_ = [stack.enter_context(worker(s, free_port())) for _ in range(workers)]
            members(s, workers)
            publish_sync(s, events[:third])
            stack.enter_context(worker(s, free_port()))  # one joins
            publish_sync(s, events[third : 2 * third])
            members(s, workers + 1)
            first.send_signal(signal.SIGTERM)  # one leaves
            first.wait(timeout=60)
            publish_sync(s, events[2 * third :])
            published = time.monotonic()
            complete = caught = None
            while time.monotonic() - published < CAUGHT_UP_WITHIN:
                if caught is None and not run_coroutine(uncommitted(s)):
                    caught = time.monotonic() - published
                if complete is None and comparable(snapshot(s)) == want:
                    complete = time.monotonic() - published
                if caught is not None and complete is not None:
                    break
                time.sleep(0.5)
            return (
                caught is not None,
                caught if caught is not None else float("inf"),
                complete if complete is not None else float("inf"),
                complete is not None,
            )
    finally:
        drop_isolated(s)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--workers", type=int, nargs="+", default=[2, 3])
    args = parser.parse_args()
    for n in args.workers:
        results = []
        for i in range(args.runs):
            r = one_run(n, seed=100 + i)
            results.append(r)
            print(
                f"{n} workers (+1 joins, 1 leaves), run {i + 1}: caught up {r[0]} after "
                f"{r[1]:.1f}s, projections complete after {r[2]:.1f}s, equal {r[3]}",
                flush=True,
            )
        lag_after = [max(0.0, r[1] - r[2]) for r in results if r[0] and r[3]]
        print(
            f"== {n} workers: {sum(r[0] for r in results)} of {len(results)} caught up, "
            f"{sum(r[3] for r in results)} with the oracle's projections; committed offsets "
            f"reached the end at most {max(lag_after, default=float('nan')):.1f}s after the "
            f"projections were complete (median "
            f"{statistics.median(lag_after) if lag_after else float('nan'):.1f}s)",
            flush=True,
        )


if __name__ == "__main__":
    main()
