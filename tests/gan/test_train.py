"""bench.gan: EMA, progressive schedule, real batches, the training loop and per-class fitting on a toy GAN."""
import dataclasses

import pytest
import torch
from torch import nn

from bench.gan.ema import ema_decay_at, ema_update
from bench.gan.per_class import PerClassGAN, model_keys
from bench.gan.progressive import Stage, levels, stage_at
from bench.gan.train import GANConfig, real_batch
from bench.interface import Condition, RunContext, Sample

RED, BLUE = (0.9, 0.1, 0.1), (0.1, 0.2, 0.9)


def colour_samples(colour, n, label=None, size=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    base = torch.tensor(colour).view(3, 1, 1)
    return [Sample(image=(base + 0.03 * torch.randn(3, size, size, generator=g)).clamp(0, 1), label=label)
            for _ in range(n)]


class ToyG(nn.Module):
    def __init__(self, res):
        super().__init__()
        self.res, self.fc = res, nn.Linear(8, 3 * res * res)

    def forward(self, z, stage=None):
        return self.fc(z).view(-1, 3, self.res, self.res)

    def train_inputs(self, n, rng):
        return {"z": torch.randn(n, 8, generator=rng)}

    sample_inputs = train_inputs


class ToyD(nn.Module):
    def __init__(self, res):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(3 * res * res, 32), nn.LeakyReLU(0.2), nn.Linear(32, 1))

    def forward(self, x, stage=None):
        return self.net(x).squeeze(1)


class ToyGAN(PerClassGAN):
    """A linear generator and an MLP critic: the per-class machinery without a real architecture."""

    def build_generator(self, resolution):
        return ToyG(resolution)

    def build_discriminator(self, resolution):
        return ToyD(resolution)

CFG = GANConfig(resolution=8, latent_dim=8, steps=300, batch_size=16, lr=5e-3, loss="logistic", r1_gamma=1.0,
                ema_decay=0.9)


def mean_colour(samples):
    return torch.stack([s.image.mean(dim=(1, 2)) for s in samples]).mean(0)


def test_ema_update_and_ramp():
    a, b = nn.Linear(2, 2), nn.Linear(2, 2)
    old, src = a.weight.detach().clone(), b.weight.detach().clone()
    ema_update(a, b, 0.9)
    assert torch.allclose(a.weight, 0.9 * old + 0.1 * src)
    assert ema_decay_at(0, 0.999) == pytest.approx(0.1) and ema_decay_at(10**6, 0.999) == 0.999


def test_progressive_schedule():
    assert levels(4, 32) == [4, 8, 16, 32]
    with pytest.raises(ValueError):
        levels(4, 48)
    # 400 steps over 4 levels -> 100 each; levels after the first fade in over 50 steps
    assert stage_at(0, 400, 4, 32) == Stage(4, 1.0) and stage_at(99, 400, 4, 32) == Stage(4, 1.0)
    assert stage_at(100, 400, 4, 32) == Stage(8, 0.0)
    assert stage_at(125, 400, 4, 32) == Stage(8, 0.5)
    assert stage_at(160, 400, 4, 32) == Stage(8, 1.0)
    assert stage_at(399, 400, 4, 32) == Stage(32, 1.0)


def test_real_batch_downsamples_and_fades():
    images = torch.randint(0, 256, (3, 3, 8, 8), dtype=torch.uint8)
    idx = torch.tensor([0, 2])
    full = real_batch(images, idx, None, None)
    assert full.shape == (2, 3, 8, 8) and full.min() >= -1 and full.max() <= 1
    half = real_batch(images, idx, Stage(4, 1.0), None)
    assert torch.allclose(half, torch.nn.functional.avg_pool2d(full, 2))
    faded = real_batch(images, idx, Stage(8, 0.0), None)
    assert torch.allclose(faded, torch.nn.functional.interpolate(half, scale_factor=2))
    flipped = real_batch(images, idx, None, torch.tensor([True, False]))
    assert torch.equal(flipped[0], full[0].flip(-1)) and torch.equal(flipped[1], full[1])


def test_model_keys():
    assert model_keys([None, None], True) == ["all", "all"]
    assert model_keys([2, 0], True) == ["2", "0"] and model_keys([2, 0], False) == ["all", "all"]
    with pytest.raises(ValueError):
        model_keys([1, None], True)


def test_one_model_per_class_learns_each_class_colour():
    train = colour_samples(RED, 24, label=0) + colour_samples(BLUE, 24, label=3, seed=1)
    untrained = ToyGAN(dataclasses.replace(CFG, steps=1, lr=0.0))
    untrained.fit(train, RunContext())
    model = ToyGAN(CFG)
    model.fit(train, RunContext())
    assert sorted(model.generators) == ["0", "3"] and model.counts == {"0": 24, "3": 24}
    conds = [Condition(label=lab, meta={"index": i}) for i, lab in enumerate([0] * 8 + [3] * 8)]
    out = list(model.generate(conds, RunContext(seed=1)))
    before = list(untrained.generate(conds, RunContext(seed=1)))
    red, blue = mean_colour(out[:8]), mean_colour(out[8:])
    target_r, target_b = torch.tensor(RED), torch.tensor(BLUE)
    d = [float((mean_colour(x) - t).norm()) for x, t in ((before[:8], target_r), (out[:8], target_r), (before[8:], target_b), (out[8:], target_b))]
    # measured: red 0.671 -> 0.052, blue 0.632 -> 0.050
    print("mean-colour distance to the class colour, untrained -> trained: red %.3f -> %.3f, blue %.3f -> %.3f" % tuple(d))
    assert float((red - target_r).norm()) < 0.5 * float((mean_colour(before[:8]) - target_r).norm())
    assert float((blue - target_b).norm()) < 0.5 * float((mean_colour(before[8:]) - target_b).norm())
    assert red[0] > red[2] + 0.3 and blue[2] > blue[0] + 0.3  # class c's samples come from class c's model
    assert {s.meta["model"] for s in out[:8]} == {"0"} and {s.meta["model"] for s in out[8:]} == {"3"}
    with pytest.raises(ValueError, match="no model for class 5"):
        next(model.generate([Condition(label=5)], RunContext()))
    # no label: the class mixture, deterministic per index
    mixed = list(model.generate([Condition(meta={"index": i}) for i in range(12)], RunContext(seed=1)))
    assert {s.meta["model"] for s in mixed} == {"0", "3"}


def test_unlabelled_data_trains_one_model(tmp_path):
    model = ToyGAN(dataclasses.replace(CFG, steps=3))
    model.fit(colour_samples(RED, 8), RunContext())
    assert list(model.generators) == ["all"]
    out = next(model.generate([Condition(label=4, meta={"index": 0})], RunContext()))
    assert out.image.shape == (3, 8, 8) and out.label == 4


def test_training_is_deterministic():
    train = colour_samples(RED, 8)
    a, b = ToyGAN(dataclasses.replace(CFG, steps=5)), ToyGAN(dataclasses.replace(CFG, steps=5))
    a.fit(train, RunContext(seed=2))
    b.fit(train, RunContext(seed=2))
    assert all(torch.equal(x, y) for x, y in zip(a.generators["all"].state_dict().values(),
                                                 b.generators["all"].state_dict().values()))
