"""How the transfer engine cuts a file into parts."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from wan_desktop.models.partials import MIN_PART_BYTES, TAIL_SPLIT, plan_parts

MIB = 1 << 20


@given(
    size=st.integers(0, 50_000 * MIB),
    part_size=st.integers(MIB, 256 * MIB),
    parallel=st.integers(1, 16),
)
def test_parts_cover_the_file_once_in_order(size: int, part_size: int, parallel: int) -> None:
    parts = plan_parts(size, part_size, parallel)
    assert parts[0][0] == 0 and parts[-1][1] == size
    assert all(b == c for (_, b), (c, _) in itertools.pairwise(parts)), "contiguous"
    assert all(a < b for a, b in parts) or size == 0
    assert all(b - a <= part_size for a, b in parts)


def test_a_small_file_is_one_part() -> None:
    assert plan_parts(0, 32 * MIB, 4) == [(0, 0)]
    assert plan_parts(32 * MIB, 32 * MIB, 4) == [(0, 32 * MIB)]


def test_the_last_parts_are_finer_so_parallel_parts_end_together() -> None:
    size, part, parallel = 10 * 32 * MIB + 5, 32 * MIB, 4
    parts = plan_parts(size, part, parallel)
    small = part // TAIL_SPLIT
    big = [b - a for a, b in parts if b - a == part]
    tail = [b - a for a, b in parts if b - a < part]
    assert len(big) == 6, "the first 6 of ~10 parts keep the full size"
    assert all(n == small for n in tail[:-1]) and tail[-1] == 5
    # The tail spans at least `parallel` full parts: the last wave of parts is all fine ones.
    assert sum(tail) >= parallel * part
    assert plan_parts(size, 4 * MIB, 4)[-2] == (size - 5 - MIN_PART_BYTES, size - 5)
