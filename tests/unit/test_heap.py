"""Freezing what a process built at startup keeps full collections short."""

from __future__ import annotations

import gc

from viarah.entrypoints.heap import freeze_startup_objects


def test_frozen_objects_are_left_out_of_full_collections() -> None:
    gc.unfreeze()
    long_lived = [[n] for n in range(200_000)]  # tracked containers, like startup's
    try:
        before = gc.get_freeze_count()
        frozen = freeze_startup_objects()
        assert frozen >= before + len(long_lived)
        # The collector no longer walks them: a full collection visits far fewer objects.
        assert len(gc.get_objects(generation=2)) < frozen // 2
    finally:
        gc.unfreeze()
    assert gc.get_freeze_count() == 0
    assert long_lived[-1] == [199_999]
