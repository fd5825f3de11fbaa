"""zestguide: the loss on hand-computed inputs, guidance lowers it on mini-sd, determinism and batch independence on
a tiny random SD folder (the paper loading path), the fit shared with DiDGen, a smoke seg-aug run."""
import math

import pytest
import torch

from baselines.zestguide import ZestGuide, ZestGuideConfig
from baselines.zestguide.loss import segment_maps, zest_loss
from bench.data.derm_mini import DermMini
from tests.baselines._guided_common import (
    WORDS, check_deterministic_and_batch_independent, check_fit_options_equal_didgen, loss_before_after,
    smoke_run_after_didgen,
)


def _disk(side, cy, cx, r):
    yy, xx = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")
    return ((yy - cy) ** 2 + (xx - cx) ** 2 <= r ** 2).float()


def test_loss_minimum_at_the_mask_and_worse_for_the_complement():
    m = _disk(16, 7, 8, 4)
    target = torch.stack([m, 1 - m])
    eps = 1e-3
    entropy = -(eps * math.log(eps) + (1 - eps) * math.log(1 - eps))
    exact = zest_loss(target, target, scale=1.0)
    # a == n == mask (up to the 1e-4 of the max-normalisation): each BCE is the clamped target's entropy
    assert exact.item() == pytest.approx(2 * entropy, rel=1e-3)
    assert zest_loss(1 - target, target, scale=1.0).item() > 10 * exact.item()
    assert zest_loss(torch.full_like(target, 0.5), target, scale=1.0).item() > exact.item()
    # the default scale 10 makes maps of a tenth of the mask the best fit
    assert zest_loss(target / 10, target).item() == pytest.approx(exact.item(), rel=1e-3)


def test_gate_blocks_gradient_where_map_and_mask_are_both_small():
    m = torch.zeros(1, 4, 4)
    m[0, :2] = 1
    maps = torch.full((1, 4, 4), 1e-4)
    maps[0, :2] = 0.05
    maps.requires_grad_(True)
    zest_loss(maps, m).backward()
    assert maps.grad[0, 2:].abs().sum() == 0 and maps.grad[0, :2].abs().sum() > 0


def test_segment_maps_sum_the_segment_tokens():
    class Store:
        def maps(self, res, kind="cross"):
            ca = torch.zeros(1, res, res, 8)
            ca[..., 2], ca[..., 3], ca[..., 5] = 0.1, 0.2, 0.4
            return ca

    out = segment_maps(Store(), (4,), [[2, 3], [5]], side=4)
    assert out.shape == (1, 2, 4, 4)
    assert torch.allclose(out[0, 0], torch.full((4, 4), 0.3)) and torch.allclose(out[0, 1], torch.full((4, 4), 0.4))


def _mini(**kw):
    base = dict(backbone="mini-sd", resolution=32, ca_res=8, sa_res=16, sample_steps=20, guidance_scale=3.0,
                generate_batch=3, zest_res=(8, 16))
    return ZestGuideConfig(**{**base, **kw})


@pytest.mark.parametrize("t_index", [0, 5])
def test_guidance_step_lowers_the_zestguide_loss_on_mini_sd(t_index):
    from bench.diffusion.attention import AttentionStore

    model = ZestGuide(_mini())
    store = AttentionStore(cross=True, resolutions={8, 16}, mode="last", keep_grad=True)
    mask = DermMini(image_size=64, sizes={"train": 1, "val": 1, "test": 1}).load("val")[0].mask
    before, after = loss_before_after(model, store, lambda st, rows, masks, enc: model.loss(st, rows, masks, enc.positions),
                                      mask, step=0.3, normalize="max", t_index=t_index)
    print(f"ZestGuide loss at iteration {t_index}: {before:.4f} -> {after:.4f}")
    assert after < before


def test_step_sizes_follow_the_code_schedule():
    from bench.diffusion.sampling import make_scheduler
    from bench.diffusion.models import load_mini_sd

    model = ZestGuide(_mini(sample_steps=10))
    sched = make_scheduler("pndm", load_mini_sd().scheduler)
    sched.set_timesteps(10)
    eta = model.step_sizes(sched)
    n = len(sched.timesteps)
    last = int(n * 0.5)
    assert all(e > 0 for e in eta[:last + 1]) and all(e == 0 for e in eta[last + 1:])
    t0 = int(sched.timesteps[0])
    assert eta[0] == pytest.approx(0.3 * float((1 - sched.alphas_cumprod[t0]).sqrt()))


@pytest.fixture(scope="module")
def tiny_sd(tmp_path_factory):
    from bench.diffusion.models import make_tiny_sd

    return make_tiny_sd(tmp_path_factory.mktemp("sd") / "sd", seed=0, sample_size=16, words=WORDS)


def test_paper_path_deterministic_and_batch_independent(tiny_sd):
    model = ZestGuide(ZestGuideConfig(backbone=str(tiny_sd), resolution=32, ca_res=16, sa_res=16, sample_steps=4,
                                      guidance_scale=3.0, generate_batch=3, zest_res=(16,)))
    masks = [s.mask for s in DermMini(image_size=64, sizes={"train": 3, "val": 1, "test": 1}).load("train")]
    check_deterministic_and_batch_independent(model, masks)


def test_fit_options_equal_didgens_in_every_profile():
    check_fit_options_equal_didgen(ZestGuide)
    assert ZestGuide.fit_from == "didgen"


def test_smoke_seg_aug_reuses_didgens_fit(tmp_path):
    record = smoke_run_after_didgen("zestguide", tmp_path)
    assert record["cached"]["fit"] is True and record["cached"]["generate"] is False
    assert record["method"]["id"] == "zestguide"
