"""bench.gan.layers: equalized lr, pixel norm, minibatch stddev, fade-in."""
import math

import torch

from bench.gan.layers import EqualizedConv2d, EqualizedLinear, MinibatchStdDev, PixelNorm, channels_at, fade_in


def test_equalized_linear_scales_weights_at_run_time():
    torch.manual_seed(0)
    layer = EqualizedLinear(16, 4, lr_mul=0.5)
    assert math.isclose(layer.scale, 0.5 * math.sqrt(2) / 4)
    x = torch.randn(3, 16)
    expected = x @ (layer.weight * layer.scale).T + layer.bias * 0.5
    assert torch.allclose(layer(x), expected)
    big = EqualizedLinear(4096, 64)
    out = big(torch.randn(256, 4096))
    assert abs(float(out.detach().std()) - math.sqrt(2)) < 0.1  # He gain: unit-variance input -> variance 2


def test_equalized_conv_keeps_variance_and_shape():
    torch.manual_seed(0)
    conv = EqualizedConv2d(32, 8, 3, gain=1.0)
    assert math.isclose(conv.scale, 1 / math.sqrt(32 * 9))
    out = conv(torch.randn(8, 32, 16, 16))
    assert out.shape == (8, 8, 16, 16) and abs(float(out.detach()[..., 1:-1, 1:-1].std()) - 1.0) < 0.1
    assert EqualizedConv2d(4, 4, 4, padding=0)(torch.randn(1, 4, 4, 4)).shape == (1, 4, 1, 1)


def test_pixel_norm_gives_unit_mean_square_per_pixel():
    x = torch.randn(2, 5, 3, 3) * 7
    y = PixelNorm()(x)
    assert torch.allclose(y.pow(2).mean(dim=1), torch.ones(2, 3, 3), atol=1e-5)
    assert torch.allclose(PixelNorm()(torch.full((1, 4, 1, 1), 3.0)), torch.ones(1, 4, 1, 1))


def test_minibatch_stddev_values():
    # two samples, constant maps 0 and 2: std over the pair (biased) is 1 everywhere
    x = torch.stack([torch.zeros(3, 2, 2), torch.full((3, 2, 2), 2.0)])
    y = MinibatchStdDev(group_size=4)(x)
    assert y.shape == (2, 4, 2, 2)
    assert torch.allclose(y[:, :3], x) and torch.allclose(y[:, 3], torch.ones(2, 2, 2), atol=1e-4)
    same = MinibatchStdDev()(torch.ones(4, 2, 3, 3))
    assert torch.allclose(same[:, 2], torch.zeros(4, 3, 3), atol=1e-3)
    # groups of 2 in a batch of 4: samples i and i + 2 share a group
    x = torch.stack([torch.zeros(1, 1, 1), torch.zeros(1, 1, 1), torch.full((1, 1, 1), 2.0), torch.full((1, 1, 1), 4.0)])
    y = MinibatchStdDev(group_size=2)(x)[:, 1, 0, 0]
    assert torch.allclose(y, torch.tensor([1.0, 2.0, 1.0, 2.0]), atol=1e-4)
    assert MinibatchStdDev(group_size=4)(torch.randn(6, 2, 2, 2)).shape == (6, 3, 2, 2)  # group shrinks to 3


def test_fade_in_is_exact_at_the_ends():
    old, new = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    assert torch.equal(fade_in(old, new, 0.0), old)
    assert torch.equal(fade_in(old, new, 1.0), new)
    assert torch.allclose(fade_in(old, new, 0.25), 0.75 * old + 0.25 * new)


def test_channels_at():
    assert [channels_at(r, 16384, 512) for r in (4, 32, 64, 256)] == [512, 512, 256, 64]
