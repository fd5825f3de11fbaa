"""sl-stylegan: mapping, style mixing, noise and demodulation (behaviour shared with pgan: test_gan_baselines.py)."""
import torch

from baselines.sl_stylegan.model import MappingNetwork, ModulatedConv2d, ResidualDiscriminator, StyleGenerator


def test_mapping_style_mixing_noise_and_discriminator_shapes():
    torch.manual_seed(0)
    assert MappingNetwork(8, 12, 3)(torch.randn(5, 8)).shape == (5, 12)
    g, d = StyleGenerator(16, 8, 8, 128, 16, mapping_layers=2).eval(), ResidualDiscriminator(16, 128, 16)
    assert g.num_ws == 1 + 2 * 2 + 1 and g.noise_shapes() == [(1, 4, 4), (1, 8, 8), (1, 8, 8), (1, 16, 16), (1, 16, 16)]
    rng = torch.Generator().manual_seed(0)
    inputs = g.sample_inputs(3, rng)
    x = g(**inputs)
    assert x.shape == (3, 3, 16, 16) and d(x).shape == (3,)
    z, z2, noise = inputs["z"], torch.randn(3, 8), inputs["noise"]
    none = torch.full((3,), g.num_ws)
    assert torch.equal(g(z, z2=z2, crossover=none, noise=noise), x)           # crossover at the end: no mixing
    assert torch.allclose(g(z2, noise=noise), g(z, z2=z2, crossover=torch.zeros(3, dtype=torch.long), noise=noise))
    mixed = g(z, z2=z2, crossover=torch.full((3,), 3), noise=noise)
    assert not torch.allclose(mixed, x) and not torch.allclose(mixed, g(z2, noise=noise))
    for conv in g.convs:
        conv.noise_strength.data.fill_(1.0)
    other = [torch.randn_like(n) for n in noise]
    assert not torch.allclose(g(z, noise=noise), g(z, noise=other))          # noise inputs change the image
    assert torch.allclose(g(z, noise=noise, truncation=0.0)[0], g(z2, noise=noise, truncation=0.0)[0], atol=1e-5)
    train = g.train_inputs(6, rng)
    assert train["z"].shape == (6, 8) and ((train["crossover"] >= 1) & (train["crossover"] <= g.num_ws)).all()


def test_modulated_conv_demodulates_to_unit_variance():
    torch.manual_seed(0)
    conv = ModulatedConv2d(64, 16, 3, 8)
    out = conv(torch.randn(4, 64, 12, 12), torch.randn(4, 8) * 3)
    assert out.shape == (4, 16, 12, 12) and abs(float(out.detach()[..., 1:-1, 1:-1].std()) - 1.0) < 0.15
    up = ModulatedConv2d(4, 2, 3, 8, upsample=True)
    assert up(torch.randn(2, 4, 5, 5), torch.randn(2, 8)).shape == (2, 2, 10, 10)
