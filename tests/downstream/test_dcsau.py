import pytest
import torch

from bench.downstream import SEGMENTERS
from bench.downstream.dcsau import CompactSplitAttention, DCSAUNet, DepthwiseMixer


def test_shapes_and_size_check():
    model = SEGMENTERS.get("dcsau-net")(in_channels=3, base=8, depth=3)
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 1, 32, 32)
    with pytest.raises(ValueError, match="not divisible"):
        model(torch.rand(2, 3, 36, 36))


def test_published_widths_at_base_64():
    """Encoder levels of the paper (64 stem, CSA stages 128/256/512) and the 1024-channel first decoder input."""
    model = DCSAUNet(base=64, depth=4)
    assert [stage[-1].expand[0].out_channels for stage in model.encoders] == [128, 256, 512]
    assert model.decoders[0][0].reduce[0].in_channels == 1024
    assert model.decoders[-1][-1].expand[0].out_channels == 64


def test_mixer_shares_weights_across_repetitions():
    a, b = DepthwiseMixer(8, depth=1), DepthwiseMixer(8, depth=12)
    assert sum(p.numel() for p in a.parameters()) == sum(p.numel() for p in b.parameters())
    b.load_state_dict(a.state_dict())
    x = torch.rand(2, 8, 4, 4)
    a.eval(), b.eval()
    assert not torch.allclose(a(x), b(x))  # twelve applications differ from one


def test_split_attention_is_a_convex_combination_of_the_splits():
    torch.manual_seed(0)
    unit = CompactSplitAttention(4).eval()
    x = torch.rand(2, 4, 6, 6)
    x1, x2 = unit.conv(x).split(4, dim=1)
    x2 = unit.conv2(x1 + x2)
    out = unit(x)
    lo, hi = torch.minimum(x1, x2), torch.maximum(x1, x2)
    assert torch.all(out >= lo - 1e-6) and torch.all(out <= hi + 1e-6)


def test_a_few_steps_reduce_the_loss():
    torch.manual_seed(0)
    model = DCSAUNet(3, base=8, depth=2, mixer_depth=2)
    images = torch.rand(8, 3, 16, 16)
    masks = (images.mean(1, keepdim=True) > 0.5).float()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(15):
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(images), masks)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.9 * losses[0]
