"""pix2pixhd: network shapes, the multi-scale discriminator and the losses as the paper specifies them, learning on
derm-mini, determinism, save/load, the VGG19 loading path and a smoke seg-aug run through the runner."""
import pytest
import torch
from typer.testing import CliRunner

from bench.diffusion.mask_following import lesion_darkness
from baselines.pix2pixhd import Pix2PixHD, Pix2PixHDConfig
from baselines.pix2pixhd.losses import VGG19_FILE, feature_matching_loss, lsgan_loss, vgg19_trunk
from baselines.pix2pixhd.model import GlobalGenerator, LocalEnhancer, MultiscaleDiscriminator, _down2, label_map
from baselines.pix2pixhd.train import lr_factor
from bench.data.derm_mini import DermMini
from bench.interface import Condition, RunContext
from bench.metrics.extractors import MissingWeightsError
from bench.tasks.common import resize_image, resize_mask


@pytest.fixture(scope="module")
def derm():
    ds = DermMini(image_size=64, sizes={"train": 96, "val": 12, "test": 1})
    return list(ds.load("train")), list(ds.load("val"))


def _tiny(**kw) -> Pix2PixHDConfig:
    base = dict(resolution=32, ngf=4, n_downsampling=2, n_blocks=1, ndf=4, num_d=2, lambda_vgg=0.0, epochs=1,
                decay_epochs=0, batch_size=4, generate_batch=2)
    return Pix2PixHDConfig(**{**base, **kw})


def _conds(samples, offset=0):
    return [Condition(mask=s.mask, meta={"index": offset + i}) for i, s in enumerate(samples)]


def _images(model, conds, seed=0):
    return torch.stack([s.image for s in model.generate(conds, RunContext(seed=seed))])


def test_generators_and_multiscale_discriminator_shapes():
    x = label_map(torch.rand(2, 32, 32) > 0.5, 2)
    assert x.shape == (2, 2, 32, 32) and torch.equal(x.sum(1), torch.ones(2, 32, 32))
    assert torch.equal(label_map(x[:, 1] > 0, 1)[:, 0], x[:, 1])
    for g in (GlobalGenerator(2, 3, ngf=4, n_downsampling=3, n_blocks=2),
              LocalEnhancer(2, 3, ngf=4, n_downsampling_global=2, n_blocks_global=1, n_blocks_local=1)):
        y = g(x)
        assert y.shape == (2, 3, 32, 32) and y.abs().max() <= 1 and g.factor == 8
    d = MultiscaleDiscriminator(5, ndf=4, n_layers=3, num_d=3)
    pair = torch.randn(2, 5, 64, 64)
    out = d(pair)
    assert len(out) == 3 and all(len(feats) == 3 + 2 for feats in out)  # 70x70 PatchGAN: 5 conv layers
    assert [feats[-1].shape[1] for feats in out] == [1, 1, 1]
    assert [f.shape[1] for f in out[0]] == [4, 8, 16, 32, 1]
    assert [feats[-1].shape[-1] for feats in out] == [11, 7, 5]  # patch maps of the 64, 32 and 16 px scales
    torch.testing.assert_close(out[1][-1], d.scales[1](_down2(pair))[-1])  # D_2 sees the input downsampled once
    torch.testing.assert_close(out[2][-1], d.scales[2](_down2(_down2(pair)))[-1])


def test_lsgan_and_feature_matching_losses():
    ones = [[torch.randn(2, 3, 4, 4), torch.ones(2, 1, 5, 5)], [torch.randn(2, 3, 2, 2), torch.ones(2, 1, 3, 3)]]
    zeros = [[f, torch.zeros_like(s)] for f, s in ones]
    assert float(lsgan_loss(ones, True)) == 0 and float(lsgan_loss(zeros, False)) == 0
    assert float(lsgan_loss(ones, False)) == 2 and float(lsgan_loss(zeros, True)) == 2  # summed over the 2 scales
    half = [[f, torch.full_like(s, 0.5)] for f, s in ones]
    assert float(lsgan_loss(half, True)) == pytest.approx(0.5)

    real = [[torch.randn(2, 3, 4, 4), torch.randn(2, 1, 5, 5)], [torch.randn(2, 3, 2, 2), torch.randn(2, 1, 3, 3)]]
    same = [[t.clone().requires_grad_(True) for t in feats] for feats in real]
    assert float(feature_matching_loss(same, real).detach()) == 0
    scores_differ = [feats[:-1] + [feats[-1] + 1] for feats in real]
    assert float(feature_matching_loss(scores_differ, real)) == 0  # the score layer is not a feature
    shifted = [[feats[0] + 0.25, feats[1]] for feats in real]
    assert float(feature_matching_loss(shifted, real)) == pytest.approx(0.5)  # 0.25 per scale, summed
    real_leaf = [[t.clone().requires_grad_(True) for t in feats] for feats in real]
    feature_matching_loss(same, real_leaf).backward()
    assert same[0][0].grad is not None and real_leaf[0][0].grad is None  # real features are targets only


def test_lr_schedule_and_config_checks():
    assert [lr_factor(e, 200, 100) for e in (0, 99, 100, 150, 199)] == [1.0, 1.0, 1.0, 0.5, 0.01]
    assert lr_factor(5, 8, 0) == 1.0
    from bench.config import ConfigError, build

    with pytest.raises(ConfigError, match="not a multiple of 32"):
        build(Pix2PixHDConfig, {"resolution": 48, "net_g": "local", "n_downsampling": 4}, "method")
    with pytest.raises(ConfigError, match="decay_epochs=5 exceeds"):
        build(Pix2PixHDConfig, {"epochs": 4, "decay_epochs": 5}, "method")


def test_short_fit_makes_images_darker_inside_the_mask(derm):
    """After a short fit, G's images are darker inside the conditioning mask than outside (as derm-mini's real
    lesions are), for most validation masks; the untrained G's images are not."""
    train, val = derm
    config = Pix2PixHDConfig(resolution=32, ngf=8, n_downsampling=2, n_blocks=2, ndf=8, num_d=2, lambda_vgg=0.0,
                             epochs=4, decay_epochs=0, batch_size=4, lr=5e-4)
    masks = torch.stack([resize_mask(s.mask, 32) for s in val])
    real = torch.stack([resize_image(s.image, 32) for s in val])
    assert lesion_darkness(real, masks).mean() > 0.08  # the property is there to learn
    model = Pix2PixHD(config)
    before = lesion_darkness(_images(model, _conds(val)), masks)
    model.fit(train, RunContext())
    out = _images(model, _conds(val))
    after = lesion_darkness(out, masks)
    # measured (train_seed 42; 1; 2): mean darkness 0.043 -> 0.183; 0.041 -> 0.136; 0.005 -> 0.139 (real 0.133),
    # 12/12 masks above 0.02 after; L1 to the real images 0.110; 0.116; 0.100
    assert after.mean() > before.mean() + 0.06, (before, after)
    assert (after > 0.02).sum() >= 10, (before, after)
    assert (out - real).abs().mean() < 0.16  # skin-coloured images, not just any contrast


def test_fit_and_generation_are_seeded_and_batch_independent(derm):
    train, val = derm
    model = Pix2PixHD(_tiny(noise_channels=2))
    model.fit(train[:8], RunContext(seed=3))
    weights = {k: v.clone() for k, v in model.generator.state_dict().items()}
    torch.manual_seed(123)  # the global random state plays no part
    model.fit(train[:8], RunContext(seed=3))
    assert all(torch.equal(weights[k], v) for k, v in model.generator.state_dict().items())
    other_fit = Pix2PixHD(_tiny(noise_channels=2))
    other_fit.fit(train[:8], RunContext(seed=4))
    assert any(not torch.equal(weights[k], v) for k, v in other_fit.generator.state_dict().items())

    conds = _conds(val[:3], offset=5)
    first, second = _images(model, conds, seed=11), _images(model, conds, seed=11)
    alone = next(model.generate(conds[1:2], RunContext(seed=11))).image  # seeded per condition index
    assert torch.equal(first, second)
    torch.testing.assert_close(alone, first[1], atol=1e-5, rtol=0)
    assert (first - _images(model, conds, seed=12)).abs().mean() > 1e-4  # the noise channels follow the run seed
    samples = list(model.generate(conds, RunContext()))
    for s, c in zip(samples, conds):
        assert s.image.shape == (3, 32, 32) and s.image.dtype == torch.float32
        assert 0 <= s.image.min() and s.image.max() <= 1
        assert s.mask.dtype == torch.bool and torch.equal(s.mask, resize_mask(c.mask, 32))

    plain = Pix2PixHD(_tiny())
    plain.fit(train[:4], RunContext())
    assert torch.equal(_images(plain, conds, seed=1), _images(plain, conds, seed=2))  # no noise: mask -> image


def test_save_load_round_trip_and_errors(derm, tmp_path):
    train, val = derm
    model = Pix2PixHD(_tiny(net_g="local"))
    model.fit(train[:4], RunContext())
    model.save(tmp_path / "state")
    assert sorted(p.name for p in (tmp_path / "state").iterdir()) == ["generator.safetensors", "pix2pixhd.json"]
    reloaded = Pix2PixHD(_tiny(net_g="local"))
    reloaded.load(tmp_path / "state")
    assert torch.equal(_images(model, _conds(val[:2])), _images(reloaded, _conds(val[:2])))
    with pytest.raises(FileNotFoundError, match="no trained Pix2PixHD generator"):
        Pix2PixHD(_tiny()).load(tmp_path)
    with pytest.raises(ValueError, match="needs a mask in every condition; condition 1"):
        list(model.generate([Condition(mask=val[0].mask), Condition()], RunContext()))
    with pytest.raises(ValueError, match="lacks a mask"):
        Pix2PixHD(_tiny()).fit([train[0].__class__(image=train[0].image)], RunContext())


def _tiny_vgg19_state() -> dict[str, torch.Tensor]:
    """A narrow VGG19 in torchvision's ``features.<index>`` layout (conv indices of vgg19 up to relu5_1)."""
    from torchvision.models.vgg import make_layers

    features = make_layers([4, 4, "M", 4, 4, "M", 8, 8, 8, 8, "M", 8, 8, 8, 8, "M", 8, 8, 8, 8, "M"])
    return {f"features.{k}": v for k, v in features.state_dict().items()}


def test_vgg19_trunk_matches_torchvision_layout():
    from torchvision.models.vgg import cfgs, make_layers

    torch.manual_seed(0)
    features = make_layers(cfgs["E"])  # torchvision's vgg19().features, random weights
    trunk = vgg19_trunk({f"features.{k}": v for k, v in features.state_dict().items()})
    x = torch.rand(1, 3, 32, 32)
    torch.testing.assert_close(trunk(x), features[:30](x))
    with pytest.raises(KeyError, match="features.28.weight"):
        vgg19_trunk({k: v for k, v in _tiny_vgg19_state().items() if not k.startswith("features.28")})


def test_vgg_loss_needs_the_weights_file_and_runs_with_it(derm, tmp_path, monkeypatch):
    train, _ = derm
    monkeypatch.delenv("BENCH_WEIGHTS", raising=False)
    with pytest.raises(MissingWeightsError, match=f"put torchvision's {VGG19_FILE} at .*empty.{VGG19_FILE}"):
        Pix2PixHD(_tiny(lambda_vgg=10.0, weights_dir=str(tmp_path / "empty"))).fit(train[:4], RunContext())

    from bench.cli import app

    result = CliRunner().invoke(app, ["run", "--task", "seg-aug", "--method", "pix2pixhd", "--profile", "smoke",
                                      "--work-dir", str(tmp_path / "w"), "--no-progress", "--threads", "1",
                                      "--set", "method.lambda_vgg=10", "--set",
                                      f"method.weights_dir={tmp_path / 'empty'}"])
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert result.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error:"), result.output
    assert VGG19_FILE in lines[0] and not (tmp_path / "w" / "records").exists()

    weights = tmp_path / "weights"
    weights.mkdir()
    torch.save(_tiny_vgg19_state(), weights / VGG19_FILE)
    monkeypatch.setenv("BENCH_WEIGHTS", str(weights))
    model = Pix2PixHD(_tiny(lambda_vgg=10.0))
    model.fit(train[:4], RunContext())
    assert all(row["g_vgg"] > 0 for row in model.log)


def test_seg_aug_smoke_run_through_the_runner(tmp_path):
    from bench.runner import RunConfig, run_one

    rec, path = run_one(RunConfig(task="seg-aug", method="pix2pixhd", profile="smoke", work_dir=tmp_path, threads=1,
                                  progress=False))
    assert path.is_file() and rec["method"]["id"] == "pix2pixhd"
    assert rec["config"]["method"]["resolution"] == 32 and rec["config"]["method"]["lambda_vgg"] == 0.0
    assert rec["n"]["generated"] == 16 and "dice" in rec["metrics"]
    states = list((tmp_path / "fit").glob("*/state"))
    assert len(states) == 1 and (states[0] / "generator.safetensors").is_file()
