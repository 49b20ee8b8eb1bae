"""The servers' start-up heap is frozen out of the cyclic collector."""

from __future__ import annotations

import gc

from covidtech.heap import STREAM_YOUNG_THRESHOLD, collect_less_often, freeze_startup_heap


def collected_ids() -> set[int]:
    """Ids of the objects the collector's generations hold (the frozen ones are not)."""
    return {id(o) for generation in (0, 1, 2) for o in gc.get_objects(generation)}


def test_objects_alive_at_start_up_are_left_out_of_collections() -> None:
    survivors = [[i] for i in range(1000)]  # lists are tracked by the collector
    try:
        frozen = freeze_startup_heap()
        assert frozen >= len(survivors)
        later = [[0]]
        walked = collected_ids()
        assert not any(id(s) in walked for s in survivors)
        assert id(later[0]) in walked
    finally:
        gc.unfreeze()


def test_stream_processes_collect_young_objects_less_often() -> None:
    saved = gc.get_threshold()
    try:
        gc.set_threshold(700, 10, 10)
        collect_less_often()
        assert gc.get_threshold() == (STREAM_YOUNG_THRESHOLD, 10, 10)
        collect_less_often(young=100)  # never lowers a higher threshold
        assert gc.get_threshold()[0] == STREAM_YOUNG_THRESHOLD
    finally:
        gc.set_threshold(*saved)
