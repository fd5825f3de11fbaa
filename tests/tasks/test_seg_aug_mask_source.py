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


def test_mask_source_may_be_a_run_id_or_record(tmp_path):
    import json

    from bench.data.base import DataError
    from bench.tasks.derm_seg import resolve_generate_dir

    gen = tmp_path / "generate" / "abc123"
    gen.mkdir(parents=True)
    save_shard([Sample(image=torch.rand(3, 8, 8), mask=torch.ones(8, 8, dtype=torch.bool))], gen / "shard-00000")
    (tmp_path / "records").mkdir()
    record = tmp_path / "records" / "seg-aug__didgen__x.json"
    record.write_text(json.dumps({"stages": {"generate": "generate/abc123"}}))
    assert resolve_generate_dir("seg-aug__didgen__x", tmp_path) == gen
    assert resolve_generate_dir(str(record)) == gen
    assert resolve_generate_dir(str(gen)) == gen
    with pytest.raises(DataError, match="not a generate-stage folder"):
        resolve_generate_dir("no-such-run", tmp_path)
    record.write_text(json.dumps({"stages": {"generate": "generate/gone"}}))
    with pytest.raises(DataError, match="no generate folder that exists"):
        resolve_generate_dir(str(record))
