"""sl-stylegan: mapping, style mixing and noise shapes, learning, one model per class, determinism, save/load, runs."""
import dataclasses

import torch

from baselines.sl_stylegan import SLStyleGAN, SLStyleGANConfig
from baselines.sl_stylegan.model import MappingNetwork, ModulatedConv2d, ResidualDiscriminator, StyleGenerator
from bench.interface import Condition, RunContext, Sample

RED, BLUE = (0.85, 0.2, 0.15), (0.1, 0.25, 0.85)
TINY = SLStyleGANConfig(resolution=8, latent_dim=16, steps=100, batch_size=8, channel_base=128, channels_max=16,
                  mapping_layers=2, mapping_lr_mul=0.1, lr=3e-3, ema_decay=0.9)


def colour_samples(colour, n, label=None, size=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    base = torch.tensor(colour).view(3, 1, 1)
    return [Sample(image=(base + 0.03 * torch.randn(3, size, size, generator=g)).clamp(0, 1), label=label)
            for _ in range(n)]


def mean_colour(samples):
    return torch.stack([s.image.mean(dim=(1, 2)) for s in samples]).mean(0)


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


def test_fit_moves_colour_to_each_class_from_its_own_model():
    train = colour_samples(RED, 16, label=0, size=8) + colour_samples(BLUE, 16, label=2, seed=1, size=8)
    conds = [Condition(label=lab, meta={"index": i}) for i, lab in enumerate([0] * 6 + [2] * 6)]
    untrained = SLStyleGAN(dataclasses.replace(TINY, steps=1, lr=0.0))
    untrained.fit(train, RunContext())
    model = SLStyleGAN(TINY)
    model.fit(train, RunContext())
    assert sorted(model.generators) == ["0", "2"]
    before, after = list(untrained.generate(conds, RunContext())), list(model.generate(conds, RunContext()))
    d = [float((mean_colour(s) - torch.tensor(c)).norm())
         for s, c in ((before[:6], RED), (after[:6], RED), (before[6:], BLUE), (after[6:], BLUE))]
    print("sl-stylegan mean-colour distance, untrained -> trained: red %.3f -> %.3f, blue %.3f -> %.3f" % tuple(d))
    assert d[1] < 0.3 * d[0] and d[3] < 0.3 * d[2]
    red, blue = mean_colour(after[:6]), mean_colour(after[6:])
    assert red[0] > red[2] + 0.1 and blue[2] > blue[0] + 0.1  # class c comes from class c's model


def test_deterministic_batch_independent_and_save_load(tmp_path):
    model = SLStyleGAN(dataclasses.replace(TINY, steps=3))
    model.fit(colour_samples(RED, 8, size=8), RunContext(seed=1))
    conds = [Condition(meta={"index": i}) for i in range(5)]
    all_at_once = [s.image for s in model.generate(conds, RunContext(seed=4))]
    one_by_one = [next(model.generate([c], RunContext(seed=4))).image for c in conds]
    assert all(torch.equal(a, b) for a, b in zip(all_at_once, one_by_one))
    assert not torch.equal(all_at_once[0], all_at_once[1])
    assert not torch.equal(all_at_once[0], next(model.generate(conds[:1], RunContext(seed=5))).image)
    model.save(tmp_path)
    loaded = SLStyleGAN(model.config)
    loaded.load(tmp_path)
    again = [s.image for s in loaded.generate(conds, RunContext(seed=4))]
    assert all(torch.equal(a, b) for a, b in zip(all_at_once, again))
    assert all_at_once[0].shape == (3, 8, 8) and 0 <= float(all_at_once[0].min()) <= float(all_at_once[0].max()) <= 1


def test_smoke_runs_of_derm_quality_and_derm_cls(tmp_path):
    from bench.runner import RunConfig, run_one

    rec, _ = run_one(RunConfig(task="derm-quality", method="sl-stylegan", profile="smoke", work_dir=tmp_path, progress=False))
    assert rec["n"]["generated"] == 16 and "fd[mini-clip]" in rec["metrics"]
    rec, _ = run_one(RunConfig(task="derm-cls", method="sl-stylegan", profile="smoke", work_dir=tmp_path, progress=False))
    assert rec["n"]["generated"] == 24 and "f1_weighted" in rec["metrics"]
    states = sorted((tmp_path / "fit").glob("*/state/state.json"))
    import json
    counts = [json.loads(p.read_text())["counts"] for p in states]
    assert any(len(c) == 6 for c in counts)  # derm-cls: one model per minority class
