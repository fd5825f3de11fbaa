"""t2i-adapter (issue 21): diffusers' T2IAdapter on mini-sd — layout check, training on a 30-pair subset, generation
following the mask condition, save/load reuse."""
import pytest
import torch

from baselines.t2i_adapter import T2IAdapterBaseline, T2IAdapterConfig
from baselines.t2i_adapter.method import adapter_residuals, build_adapter, check_layout
from bench.data.derm_mini import DermMini
from bench.interface import Condition, RunContext


def _config(**kw):
    base = dict(resolution=32, adapter_type="full_adapter_xl", channels=(32, 64, 128), num_res_blocks=1,
                downscale_factor=2, n_train=5, steps=2, batch_size=2, lr=1e-3, sampler="ddim", sample_steps=2,
                guidance_scale=2.0, generate_batch=2)
    return T2IAdapterConfig(**{**base, **kw})


def test_fit_generate_reload(tmp_path):
    train = list(DermMini(image_size=32, sizes={"train": 12, "val": 1, "test": 1}).load("train"))
    model = T2IAdapterBaseline(_config())
    model.fit(train, RunContext(seed=1))
    assert len(model.state["train_ids"]) == 5 and model.state["log"][-1]["loss"] > 0
    conds = [Condition(mask=s.mask, meta={"index": i, "source_id": s.meta["id"]}) for i, s in enumerate(train[:3])]
    out = list(model.generate(conds, RunContext(seed=3)))
    assert len(out) == 3
    for s, cond in zip(out, conds):
        assert torch.equal(s.mask, cond.mask) and s.image.shape == (3, 32, 32) and torch.isfinite(s.image).all()
    model.save(tmp_path / "state")
    again = T2IAdapterBaseline(_config())
    again.load(tmp_path / "state")
    for a, b in zip(out, again.generate(conds, RunContext(seed=3))):
        torch.testing.assert_close(a.image, b.image)
    with pytest.raises(FileNotFoundError, match="no trained T2I-Adapter"):
        T2IAdapterBaseline(_config()).load(tmp_path / "missing")


def test_layout_mismatch_is_one_error_and_features_follow_the_cfg_batch():
    from bench.diffusion.models import load_mini_sd

    unet = load_mini_sd().unet
    with pytest.raises(ValueError, match="do not fit the backbone"):
        check_layout(build_adapter(_config(adapter_type="full_adapter", downscale_factor=1), 0), unet, 32, 1)
    adapter = build_adapter(_config(), 0)
    check_layout(adapter, unet, 32, 1)
    kwargs = adapter_residuals(adapter, torch.rand(2, 3, 32, 32), scale=0.5)(torch.zeros(4, 3, 32, 32), 1, None)
    feats = kwargs["down_intrablock_additional_residuals"]
    assert [tuple(f.shape) for f in feats] == [(4, 32, 16, 16), (4, 64, 16, 16), (4, 128, 8, 8)]
    torch.testing.assert_close(feats[0][:2], feats[0][2:])
