"""DiffBoost's Table II arms (bench/downstream/augment.py): geometric transforms move image and mask alike,
intensity transforms leave the mask as it is; the ``augment`` hook trains on them; classic-aug declares it."""
import pytest
import torch

from bench.downstream.augment import AUGMENTS, GEOMETRIC, OnlineAugment


def _pair(n=4, side=32):
    y = torch.zeros(n, 1, side, side)
    y[:, :, 6:20, 9:27] = 1
    y[:, :, 20:26, 12:16] = 1  # an L shape: rotations and flips are visible
    return y.expand(n, 3, side, side) * 0.8 + 0.1, y


@pytest.mark.parametrize("name", AUGMENTS)
def test_each_transform_keeps_masks_aligned_with_images(name):
    x, y = _pair()
    g = torch.Generator().manual_seed(1)
    xa, ya = OnlineAugment([name], 32)(x, y, g)
    assert xa.shape == x.shape and ya.shape == y.shape
    assert set(ya.unique().tolist()) <= {0.0, 1.0} and 0.0 <= xa.min() and xa.max() <= 1.0
    if name in GEOMETRIC:
        # the image is a picture of its mask: after the transform it still is (bilinear vs nearest: edge pixels)
        bright = xa.mean(1, keepdim=True) > 0.5
        inter, union = (bright & (ya > 0.5)).sum().item(), (bright | (ya > 0.5)).sum().item()
        assert inter / union > 0.95
    else:
        assert torch.equal(ya, y)  # intensity only: the mask is untouched
        assert not torch.allclose(xa, x) or name in ("random-brightness", "random-resolution")


def test_geometric_transforms_move_pixels_and_draws_repeat_with_the_generator():
    x, y = _pair(8)
    aug = OnlineAugment(["random-mirror", "random-rotate"], 32)
    a = aug(x, y, torch.Generator().manual_seed(5))
    b = aug(x, y, torch.Generator().manual_seed(5))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[1], y)


def test_brightness_alone_is_undone_by_the_codes_minmax_and_kept_with_clip():
    x, y = _pair(2)
    g = torch.Generator().manual_seed(0)
    minmax = OnlineAugment(["random-brightness"], 32)(x, y, g)[0]
    assert torch.allclose(minmax, (x - 0.1) / 0.8, atol=1e-6)  # an additive shift, then per-sample min-max
    clipped = OnlineAugment(["random-brightness"], 32, renorm="clip")(x, y, torch.Generator().manual_seed(0))[0]
    assert not torch.allclose(clipped, x)


def test_unknown_names_are_refused():
    with pytest.raises(ValueError, match="unknown augmentation 'random-foo'"):
        OnlineAugment(["random-foo"], 32)
    from bench.config import ConfigError
    from baselines.classic_aug import ClassicAugConfig

    with pytest.raises(ConfigError, match="method.transform"):
        ClassicAugConfig(transform="random-rotate").validate()  # the table's names: RandomRotate
    ClassicAugConfig(transform="DeepStack").validate()


def test_classic_aug_online_declares_the_hook_and_the_arm_trains_on_real_pairs():
    from baselines.classic_aug import ClassicAug, ClassicAugConfig
    from bench.downstream.hooks import Augment, augmented_arm
    from bench.interface import Condition, RunContext

    x, y = _pair(3)
    conds = [Condition(mask=y[i, 0] > 0, reference=x[i], meta={"index": i, "source_id": f"r{i}"}) for i in range(3)]
    out = list(ClassicAug(ClassicAugConfig(transform="RandomScale")).generate(conds, RunContext(seed=0)))
    assert [s.meta["train_hook"]["transforms"] for s in out] == [["random-scale"]] * 3
    real = (x, y[:, 0] > 0)
    syn = (torch.stack([s.image for s in out]), torch.stack([s.mask for s in out]))
    (images, masks), hook = augmented_arm(real, syn, ["r0", "r1", "r2"], out)
    assert isinstance(hook, Augment) and images is x  # the real pairs only; the carriers are not trained on
    model = torch.nn.Conv2d(3, 1, 3, padding=1)
    loss = hook.loss(model, torch.tensor([0, 2]), images, masks.float()[:, None],
                     torch.nn.functional.binary_cross_entropy_with_logits, torch.Generator().manual_seed(0))
    loss.backward()
    assert loss.item() > 0 and model.weight.grad is not None
