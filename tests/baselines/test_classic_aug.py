import pytest
import torch

from bench.config import ConfigError, build
from bench.interface import Condition, RunContext
from baselines.classic_aug import ClassicAug, ClassicAugConfig


def pair(size=32):
    image = torch.zeros(3, size, size)
    mask = torch.zeros(size, size, dtype=torch.bool)
    mask[8:20, 10:24] = True
    image[:, mask] = torch.tensor([0.8, 0.2, 0.1])[:, None]
    return image, mask


def test_geometry_moves_image_and_mask_together():
    image, mask = pair()
    gen = ClassicAug(ClassicAugConfig(brightness=0, contrast=0, saturation=0, hue=0))
    conds = [Condition(mask=mask, reference=image, meta={"index": i}) for i in range(8)]
    outs = list(gen.generate(conds, RunContext(seed=1)))
    assert len(outs) == 8
    for out in outs:
        assert out.mask.dtype == torch.bool and out.image.shape == image.shape
        red = out.image[0] > 0.5
        agree = (red == out.mask).float().mean()
        assert agree > 0.97  # the red lesion pixels are where the transformed mask is
    assert not all(torch.equal(o.mask, mask) for o in outs)


def test_seeded_per_condition_index():
    image, mask = pair()
    gen = ClassicAug()
    a = list(gen.generate([Condition(mask=mask, reference=image, meta={"index": 5})], RunContext(seed=3)))[0]
    torch.manual_seed(123)
    b = list(gen.generate([Condition(mask=mask, reference=image, meta={"index": 5})], RunContext(seed=3)))[0]
    assert torch.equal(a.image, b.image) and torch.equal(a.mask, b.mask)


def test_config_validation():
    with pytest.raises(ConfigError, match="method.hflip"):
        build(ClassicAugConfig, {"hflip": 1.5}, "method")
    with pytest.raises(ConfigError, match="method.scale"):
        build(ClassicAugConfig, {"scale": [1.2, 0.8]}, "method")
