"""The servers' start-up heap is frozen out of the cyclic collector."""

from __future__ import annotations

import gc

from covidtech.heap import freeze_startup_heap


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
