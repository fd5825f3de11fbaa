"""Common metric API: class attributes for direction/range/name and update/compute/reset.

Modelled on torchmetrics' ``Metric``: subclasses accumulate sufficient statistics in
``update`` and turn them into floats in ``compute``; a pure-function twin gives
per-sample scores where paired tests need them.
"""
from __future__ import annotations

import abc
import logging
from typing import Any, ClassVar

logger = logging.getLogger(__name__)


class BenchMetric(abc.ABC):
    """Base of accumulating metrics.

    Class attributes (read by tables and ``bench submit``):
        higher_is_better: direction, None for descriptive quantities.
        display_name: short human-readable name.
        lower_bound / upper_bound: value range, None when unbounded.
    """

    higher_is_better: ClassVar[bool | None] = None
    display_name: ClassVar[str] = ""
    lower_bound: ClassVar[float | None] = None
    upper_bound: ClassVar[float | None] = None

    def __init__(self) -> None:
        self.reset()

    @abc.abstractmethod
    def reset(self) -> None:
        """Clear the accumulated state."""

    @abc.abstractmethod
    def update(self, *args: Any, **kwargs: Any) -> None:
        """Accumulate one batch."""

    @abc.abstractmethod
    def compute(self) -> dict[str, float]:
        """Metric key(s) -> value over everything seen since the last reset."""
