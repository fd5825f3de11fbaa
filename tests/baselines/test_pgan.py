"""pgan: progressive growing shapes and exact fade-in (behaviour shared with sl-stylegan: test_gan_baselines.py)."""
import torch
import torch.nn.functional as F

from baselines.pgan.model import PGANDiscriminator, PGANGenerator
from bench.gan.progressive import Stage


def test_shapes_at_every_stage_and_exact_fade_in():
    torch.manual_seed(0)
    g, d = PGANGenerator(16, 8, 128, 16), PGANDiscriminator(16, 128, 16)
    z = torch.randn(4, 8)
    for res in (4, 8, 16):
        x = g(z, stage=Stage(res, 1.0))
        assert x.shape == (4, 3, res, res) and d(x, stage=Stage(res, 1.0)).shape == (4,)
    assert torch.equal(g(z), g(z, stage=Stage(16, 1.0)))
    # alpha 0: the new level's output is exactly the previous level's image, upsampled
    low = g(z, stage=Stage(8, 1.0))
    assert torch.equal(g(z, stage=Stage(16, 0.0)), F.interpolate(low, scale_factor=2, mode="nearest"))
    x = torch.randn(4, 3, 16, 16)
    half = d(F.avg_pool2d(x, 2), stage=Stage(8, 1.0))
    # the discriminator at alpha 0 sees only the downsampled image through the previous level's fromRGB
    assert torch.allclose(d(x, stage=Stage(16, 0.0)), half, atol=1e-5)
