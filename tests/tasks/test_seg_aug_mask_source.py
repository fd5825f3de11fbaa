"""seg-aug conditioned on another method's generated masks (the thesis conditions its baselines on DiDGen's)."""
import pytest
import torch

from bench.config import ConfigError
from bench.interface import RunContext, Sample
from bench.runner import save_shard
from bench.tasks.derm_seg import SegAugConfig, SegAugTask


def test_generated_masks_condition_in_order_and_cycle(tmp_path):
    masks = [torch.rand(16, 16) > 0.5 for _ in range(5)]
    save_shard([Sample(image=torch.rand(3, 16, 16), mask=m) for m in masks[:3]], tmp_path / "shard-00000")
    save_shard([Sample(image=torch.rand(3, 16, 16), mask=m) for m in masks[3:]], tmp_path / "shard-00001")
    config = SegAugConfig(dataset="derm-mini", dataset_options={"sizes": {"train": 4, "val": 2, "test": 2}},
                          image_size=16, n_generate=7, conditioning="generated-masks", mask_source=str(tmp_path))
    config.validate()
    task = SegAugTask(config)
    assert task.given() == {"mask"} and task.must_follow() == {"mask"}
    conds = task.conditions(task.load(RunContext()), RunContext())
    assert len(conds) == 7 and all(c.reference is None for c in conds)
    for i, c in enumerate(conds):
        assert torch.equal(c.mask, masks[i % 5]) and c.meta["index"] == i


def test_generated_masks_need_a_source():
    with pytest.raises(ConfigError, match="mask_source"):
        SegAugConfig(conditioning="generated-masks").validate()
