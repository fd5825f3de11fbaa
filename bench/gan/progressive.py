"""Progressive growing schedule (Karras et al. 2018 section 3): the resolution doubles from ``start`` to
``final``; each new level first fades in (alpha 0 -> 1) and then trains stably."""
from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Stage:
    """Where training is: the current output side ``resolution`` and the fade-in weight ``alpha`` of its
    newest layer (1: fully faded in)."""

    resolution: int
    alpha: float


def levels(start: int, final: int) -> list[int]:
    """Resolutions start, 2 start, ..., final (both powers of two, start <= final)."""
    for name, v in (("start", start), ("final", final)):
        if v < 4 or v & (v - 1):
            raise ValueError(f"{name} resolution must be a power of two >= 4, got {v}")
    if start > final:
        raise ValueError(f"start resolution {start} is above the final resolution {final}")
    return [start * 2 ** k for k in range(int(math.log2(final // start)) + 1)]


def stage_at(step: int, total_steps: int, start: int, final: int, fade_fraction: float = 0.5) -> Stage:
    """The stage at ``step`` of ``total_steps`` split equally over the levels; a level after the first spends
    ``fade_fraction`` of its steps fading in linearly."""
    res = levels(start, final)
    per_level = max(1, total_steps // len(res))
    k = min(step // per_level, len(res) - 1)
    if k == 0 or fade_fraction <= 0:
        return Stage(res[k], 1.0)
    fade_steps = max(1, int(per_level * fade_fraction))
    return Stage(res[k], min(1.0, (step - k * per_level) / fade_steps))
