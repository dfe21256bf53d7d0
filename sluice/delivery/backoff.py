"""Exponential backoff with "equal jitter": a random wait between half the ceiling and the ceiling,
so retries spread out but never come back sooner than half the intended delay."""

from __future__ import annotations

import random


def backoff_delay(attempt: int, initial: float, maximum: float, rng: random.Random | None = None) -> float:
    """Seconds to wait before retry number `attempt` (1-based)."""
    ceiling = min(maximum, initial * (2 ** (attempt - 1)))
    return (rng or random).uniform(ceiling / 2, ceiling)
