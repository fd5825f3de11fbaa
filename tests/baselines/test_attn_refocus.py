"""attn-refocus: CAR and SAR on hand-computed inputs, guidance lowers the loss on mini-sd, the code's schedule,
determinism and batch independence on a tiny random SD folder (the paper loading path), the fit shared with DiDGen,
a smoke seg-aug run."""
import pytest
import torch

from baselines.attn_refocus import AttnRefocus, AttnRefocusConfig
from baselines.attn_refocus.loss import car_loss, sar_loss
from bench.data.derm_mini import DermMini
from tests.baselines._guided_common import (
    WORDS, check_deterministic_and_batch_independent, check_fit_options_equal_didgen, loss_before_after,
    smoke_run_after_didgen,
)


def _regions(side=8):
    m = torch.zeros(side, side, dtype=torch.bool)
    m[2:5, 3:7] = True
    return torch.stack([m, ~m])


def test_car_zero_at_the_mask_two_at_the_complement():
    r = _regions()
    loss, min_inside = car_loss(r.float(), r)
    assert loss.item() == pytest.approx(0.0) and min_inside.item() == pytest.approx(1.0)
    worse, inside = car_loss((~r).float(), r)
    assert worse.item() == pytest.approx(2.0) and inside.item() == pytest.approx(0.0)
    half = torch.where(r, 0.6, 0.1)  # fg 1 - 0.6, bg 0.1 per region
    assert car_loss(half, r)[0].item() == pytest.approx(0.5)


def test_sar_zero_for_block_attention_and_one_minus_share_for_uniform():
    r = _regions()
    flat = r.flatten(1).float()
    block = sum(torch.outer(f, f) / f.sum() for f in flat)
    assert sar_loss(block, r).item() == pytest.approx(0.0, abs=1e-7)
    uniform = torch.full((64, 64), 1 / 64)
    share = flat.sum(1) / 64
    assert sar_loss(uniform, r).item() == pytest.approx(float((1 - share).mean()), rel=1e-6)
    assert sar_loss(uniform, r[:1]).item() == pytest.approx(float(1 - share[0]), rel=1e-6)


def _mini(**kw):
    base = dict(backbone="mini-sd", resolution=32, ca_res=8, sa_res=16, sample_steps=20, guidance_scale=3.0,
                generate_batch=3, refocus_ca_res=8, refocus_sa_res=8)
    return AttnRefocusConfig(**{**base, **kw})


def test_schedule_is_the_codes_for_50_steps():
    scales, inner = AttnRefocus(_mini()).schedule(50)
    assert scales[:2] == [4.0, 4.0] and inner[:2] == [2, 2] and inner[2:5] == [6, 6, 6] and scales[5:10] == [3.0] * 5
    assert [i for i in range(10, 50) if inner[i]] == [10, 15, 20, 25, 30, 35]
    assert scales[15] == 3.0 and scales[20] == 1.0 and inner[20] == 2


@pytest.mark.parametrize("t_index", [0, 5])
def test_guidance_step_lowers_the_refocus_loss_on_mini_sd(t_index):
    from bench.diffusion.attention import AttentionStore

    model = AttnRefocus(_mini())
    store = AttentionStore(cross=True, self_attention=True, resolutions={8}, mode="last", keep_grad=True)
    mask = DermMini(image_size=64, sizes={"train": 1, "val": 1, "test": 1}).load("val")[0].mask

    def loss_at(st, rows, masks, enc):
        return model.loss(st, rows, masks, enc.positions, enc.eots, 1.0)

    before, after = loss_before_after(model, store, loss_at, mask, step=200.0, t_index=t_index)
    print(f"Attn-Refocus loss at iteration {t_index}: {before:.4f} -> {after:.4f}")
    assert after < before


@pytest.fixture(scope="module")
def tiny_sd(tmp_path_factory):
    from bench.diffusion.models import make_tiny_sd

    return make_tiny_sd(tmp_path_factory.mktemp("sd") / "sd", seed=0, sample_size=16, words=WORDS)


def test_paper_path_deterministic_and_batch_independent(tiny_sd):
    model = AttnRefocus(AttnRefocusConfig(backbone=str(tiny_sd), resolution=32, ca_res=16, sa_res=16, sample_steps=4,
                                          guidance_scale=3.0, generate_batch=3, refocus_eta=50.0))
    masks = [s.mask for s in DermMini(image_size=64, sizes={"train": 3, "val": 1, "test": 1}).load("train")]
    check_deterministic_and_batch_independent(model, masks)


def test_fit_options_equal_didgens_in_every_profile():
    check_fit_options_equal_didgen(AttnRefocus)
    assert AttnRefocus.fit_from == "didgen"


def test_smoke_seg_aug_reuses_didgens_fit(tmp_path):
    record = smoke_run_after_didgen("attn-refocus", tmp_path)
    assert record["cached"]["fit"] is True and record["cached"]["generate"] is False
    assert record["method"]["id"] == "attn-refocus"
