"""seg-aug conditioned on another method's generated masks (the thesis conditions its baselines on DiDGen's)."""
from collections.abc import Iterator, Sequence
from typing import ClassVar

import pytest
import torch

from bench.interface import Capabilities, Condition, GeneratorBase, RunContext, Sample
from bench.runner import BenchError, RunConfig, load_shard, run_one

FAST = ["task.max_epochs=1", "task.segmenters=[unet]"]


class ShiftedMasks(GeneratorBase):
    """Pairs whose mask is the condition mask rolled by 3 pixels (so generated masks differ from real ones)."""

    capabilities: ClassVar[Capabilities] = Capabilities(accepts={"mask"}, returns={"image", "mask"}, requires={"mask"})
    seen: ClassVar[list[torch.Tensor]] = []

    def generate(self, conditions: Sequence[Condition], ctx: RunContext) -> Iterator[Sample]:
        for cond in conditions:
            ShiftedMasks.seen.append(cond.mask.clone())
            yield Sample(image=torch.rand(3, *cond.mask.shape), mask=cond.mask.roll(3, dims=1))


def test_generated_masks_condition_a_second_method(tmp_path):
    method = f"{__name__}:ShiftedMasks"
    run_one(RunConfig(task="seg-aug", method=method, profile="smoke", sets=FAST, work_dir=tmp_path / "a", progress=False))
    (gen_dir,) = [p for p in (tmp_path / "a" / "generate").iterdir() if p.is_dir()]
    first = [s.mask for shard in sorted(gen_dir.glob("shard-*.json")) for s in load_shard(shard.with_suffix(""))]
    ShiftedMasks.seen.clear()
    record, _ = run_one(RunConfig(task="seg-aug", method=method, profile="smoke", work_dir=tmp_path / "b", progress=False,
                                  sets=[*FAST, "task.conditioning=generated-masks", f"task.mask_source={gen_dir}"]))
    assert len(ShiftedMasks.seen) == len(first) == record["n"]["generated"]
    assert all(torch.equal(a, b) for a, b in zip(ShiftedMasks.seen, first))
    with pytest.raises(BenchError, match="mask_source"):
        run_one(RunConfig(task="seg-aug", method=method, profile="smoke", work_dir=tmp_path / "c", progress=False,
                          sets=[*FAST, "task.conditioning=generated-masks"]))
