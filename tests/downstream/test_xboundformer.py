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


# -- issue 22: the paper's XBound-Former (ImageNet PVT-v2 encoder from a local file, boundary supervision) -------

def _pvt_file(folder, monkeypatch):
    """A small timm PVT-v2 (b0, widths 32/64/160/256) saved as the encoder file, standing in for pvt_v2_b2.pth."""
    import timm

    import bench.downstream.xboundformer as xb

    monkeypatch.setattr(xb, "PVT_VARIANT", "pvt_v2_b0")
    monkeypatch.setattr(xb, "PVT_BASE", 32)
    torch.manual_seed(1)
    state = timm.create_model("pvt_v2_b0", pretrained=False, num_classes=0).state_dict()
    folder.mkdir()
    torch.save(state, folder / xb.PVT_FILE)
    return state


def test_pvt_variant_loads_the_encoder_file_and_supervises_boundaries(tmp_path, monkeypatch):
    from bench.metrics.extractors import MissingWeightsError

    with pytest.raises(MissingWeightsError, match="pvt_v2_b2.pth"):
        SEGMENTERS.get("xbound-former-pvt")(in_channels=3, base=8, depth=3, weights_dir=str(tmp_path))
    state = _pvt_file(tmp_path / "w", monkeypatch)
    model = SEGMENTERS.get("xbound-former-pvt")(in_channels=3, base=8, depth=3, weights_dir=str(tmp_path / "w"))
    loaded = model.backbone.model.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in state.items())  # the file's weights, not a random init
    x = torch.rand(2, 3, 64, 64)
    target = torch.zeros(2, 1, 64, 64)
    target[:, :, 16:48, 16:48] = 1
    assert model(x).shape == (2, 1, 64, 64)
    aux = model.auxiliary_loss(target)
    assert aux > 0
    aux.backward()
    assert model.in_scale[0].gates[0].net[0].weight.grad.abs().sum() > 0  # the gates are supervised
    plain = SEGMENTERS.get("xbound-former")(in_channels=3, base=4, depth=3)
    plain(x)
    assert float(plain.auxiliary_loss(target)) == 0.0  # the mini twin's loss is unchanged


def test_the_segmenter_trainer_adds_the_auxiliary_loss():
    from bench.downstream.trainer import SegTrainConfig, train_segmenter

    seen = []

    class Probe(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 1, 1)

        def forward(self, x):
            return self.conv(x)

        def auxiliary_loss(self, target):
            seen.append(tuple(target.shape))
            return self.conv.weight.sum() * 0

    images, masks = torch.rand(4, 3, 8, 8), torch.rand(4, 8, 8) > 0.5
    train_segmenter(Probe(), images, masks, images, masks, SegTrainConfig(max_epochs=1, batch_size=4), seed=0)
    assert seen == [(4, 1, 8, 8)]
