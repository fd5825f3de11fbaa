"""seg-aug's external transfer set (Table 4.6) and the diversity of generated masks (Table 4.7)."""
import numpy as np
import torch

from bench.interface import RunContext, Sample
from bench.tasks.derm_seg import SegAugConfig, SegAugTask

SIZES = {"sizes": {"train": 16, "val": 6, "test": 8}}


def _task(**kw) -> SegAugTask:
    kw = {"max_epochs": 1, **kw}
    config = SegAugConfig(dataset="derm-mini", dataset_options=SIZES, image_size=16, n_generate=6,
                          segmenters=("unet",), seg_base=4, seg_depth=2, patience=1, grid_size=0,
                          lpips_trunk="random", lpips_pairs=15, **kw)
    config.validate()
    return SegAugTask(config)


def _pairs(masks: list[torch.Tensor]) -> list[Sample]:
    return [Sample(image=torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(i)), mask=m)
            for i, m in enumerate(masks)]


def test_transfer_split_is_scored_by_every_arm(tmp_path):
    task = _task(transfer_dataset="derm-mini", transfer_options={"world_seed": 7, "sizes": {"test": 5}},
                 transfer_split="test", transfer_key="ph2")
    ctx = RunContext(work_dir=tmp_path)
    data = task.load(ctx)
    assert len(data.splits["transfer"]) == 5 and data.checksums["transfer"] != data.checksums["test"]
    masks = [torch.zeros(16, 16, dtype=torch.bool) for _ in range(6)]
    ev = task.evaluate(data, _pairs(masks), ctx, "x")
    for key in ("dice[ph2]", "iou[ph2]"):
        assert 0 <= ev.metrics[key] <= 1 and key in ev.per_model["unet"]
        assert key in ev.comparisons["reference_metrics"] and ev.higher_is_better[key]
    assert ev.counts["transfer"] == 5
    # The transfer score is the mean of the per-image scores on the transfer images, not a copy of the test one.
    arm = next(iter((tmp_path / "arms").glob("real-unet-*.json"))).read_text()
    assert '"transfer_iou"' in arm
    assert ev.comparisons["reference_metrics"]["iou[ph2]"] != ev.comparisons["reference_metrics"]["iou"]


def test_mask_lpips_is_zero_for_identical_masks_and_grows_with_diversity(tmp_path):
    task = _task(max_epochs=1)
    ctx = RunContext(work_dir=tmp_path)
    data = task.load(ctx)
    key = "lpips_diversity[masks,alex-random]"
    same = [torch.zeros(16, 16, dtype=torch.bool)] * 6
    for m in same:
        m[4:12, 4:12] = True
    rng = np.random.default_rng(0)
    varied = []
    for _ in range(6):
        m = torch.zeros(16, 16, dtype=torch.bool)
        r, c, h = rng.integers(0, 8), rng.integers(0, 8), rng.integers(3, 8)
        m[r:r + h, c:c + h] = True
        varied.append(m)
    flat = task.evaluate(data, _pairs(same), ctx, "x").metrics[key]
    diverse = task.evaluate(data, _pairs(varied), ctx, "x").metrics[key]
    assert flat == 0.0 and diverse > 0.01


def test_no_transfer_and_no_mask_lpips_when_switched_off(tmp_path):
    task = _task(mask_lpips=False)
    ctx = RunContext(work_dir=tmp_path)
    data = task.load(ctx)
    assert "transfer" not in data.splits
    ev = task.evaluate(data, _pairs([torch.ones(16, 16, dtype=torch.bool)] * 6), ctx, "x")
    assert set(ev.metrics) == {"dice", "iou"}
