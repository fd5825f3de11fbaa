import pytest
import torch

from bench.downstream import SEGMENTERS
from bench.downstream.xboundformer import BoundaryGate, XBoundFormer


def test_shapes_boundary_maps_and_size_check():
    torch.manual_seed(0)
    model = SEGMENTERS.get("xbound-former")(in_channels=3, base=4, depth=3)
    out = model(torch.rand(2, 3, 64, 64))
    assert out.shape == (2, 1, 64, 64)
    # Two encoder layers with a boundary gate on each of stages 2-4 (sides 8, 4, 2 at 64 px).
    assert [m.shape[-1] for m in model.boundary_maps] == [8, 8, 4, 4, 2, 2]
    assert all(((m >= 0) & (m <= 1)).all() for m in model.boundary_maps)
    with pytest.raises(ValueError, match="divisible by 32"):
        model(torch.rand(1, 3, 48, 48))


def test_pvt_v2_b2_widths_at_base_64():
    model = XBoundFormer(base=64)
    assert [e.proj.out_channels for e in model.backbone.embeds] == [64, 128, 320, 512]
    assert [len(s) for s in model.backbone.stages] == [3, 4, 6, 3]
    assert [m.out_channels for m in model.maps] == [128, 128, 128]


def test_boundary_gate_reweights_features():
    gate = BoundaryGate(4).eval()
    x = torch.rand(1, 4, 5, 5)
    out, w = gate(x)
    assert torch.allclose(out, x * w + x)


def test_gradients_reach_every_learner():
    torch.manual_seed(0)
    model = XBoundFormer(base=4, blocks=(1, 1, 1, 1))
    model(torch.rand(2, 3, 32, 32)).mean().backward()
    for name in ("backbone.embeds.0.proj.weight", "in_scale.0.query", "in_scale.2.query", "cross_21.mix.weight",
                 "cross_32.low.attn.in_proj_weight", "head.3.weight"):
        grad = model.get_parameter(name).grad
        assert grad is not None and grad.abs().sum() > 0, name
