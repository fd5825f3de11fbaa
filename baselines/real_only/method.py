"""real-only: no synthetic data. The "Original" column of every paper table."""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import ClassVar

from bench.interface import CONDITION_FIELDS, SAMPLE_FIELDS, Capabilities, Condition, GeneratorBase, RunContext, Sample


class RealOnly(GeneratorBase):
    """Generates nothing: tasks train their downstream models on real data only.

    Its capabilities are nominally universal so it fits every task; the runner asks it
    for zero samples (``produces_samples = False``).
    """

    capabilities: ClassVar[Capabilities] = Capabilities(accepts=frozenset(CONDITION_FIELDS), returns=frozenset(SAMPLE_FIELDS))
    produces_samples: ClassVar[bool] = False
    version: ClassVar[str] = "1"

    def generate(self, conditions: Sequence[Condition], ctx: RunContext) -> Iterator[Sample]:
        if conditions:
            raise ValueError("real-only generates no samples; it was given conditions")
        return iter(())
