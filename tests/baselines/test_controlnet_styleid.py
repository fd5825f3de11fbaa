"""controlnet-styleid: the paper path on a tiny random SD folder, StyleID's colour transfer on mini-sd, determinism,
the errors a user can hit, and a smoke `bench run` of the lowcontrast task."""
import dataclasses
import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from baselines.controlnet import ControlNet, ControlNetConfig
from baselines.controlnet_styleid import ControlNetStyleID, ControlNetStyleIDConfig
from baselines.controlnet_styleid.style_following import colour_distance
from bench.cli import app
from bench.config import build, profile_section
from bench.data.derm_mini import DermMini
from bench.interface import Condition, RunContext
from bench.tasks.common import resize_image, resize_mask

WORDS = ["an", "image", "of", "lesion", "on", "skin", "a"]


@pytest.fixture(scope="module")
def tiny_sd(tmp_path_factory):
    from bench.diffusion.models import make_tiny_sd

    return make_tiny_sd(tmp_path_factory.mktemp("sd") / "sd", seed=0, sample_size=16, words=WORDS)


@pytest.fixture(scope="module")
def derm():
    ds = DermMini(image_size=64, sizes={"train": 40, "val": 4, "test": 1})
    return list(ds.load("train")), list(ds.load("val"))


def _tiny_config(folder, **kw):
    base = dict(backbone=str(folder), resolution=32, steps=2, batch_size=2, lr=1e-3, sampler="ddim", sample_steps=3,
                guidance_scale=2.0, generate_batch=2, style_steps=3)
    return ControlNetStyleIDConfig(**{**base, **kw})


def _conditions(train, val, count=3, first_index=0):
    """Masks of validation images, references (styles) from training images, as the lowcontrast task pairs them."""
    return [Condition(mask=val[k].mask, reference=train[k].image, meta={"index": first_index + k})
            for k in range(count)]


def test_paper_path_fits_generates_stylised_pairs_and_reloads(tiny_sd, derm, tmp_path):
    from bench.diffusion.style import StyleKV

    train, val = derm
    model = ControlNetStyleID(_tiny_config(tiny_sd))
    model.fit(train[:8], RunContext())
    assert any(p.abs().sum() > 0 for p in model.controlnet.controlnet_mid_block.parameters())  # Stage 1 trained
    conds = _conditions(train, val, 3)
    before = {n: type(p) for n, p in model.parts.unet.attn_processors.items()}
    calls = []
    plan = StyleKV.plan
    StyleKV.plan = lambda self, step, *a, **k: (calls.append((step, len(self.layers), k.get("recorded_queries"))),
                                                plan(self, step, *a, **k))
    try:
        out = list(model.generate(conds, RunContext(seed=3)))
    finally:
        StyleKV.plan = plan
    # two batches (2 + 1) of 3 StyleID steps; inversion steps in reverse; both tiny decoder layers (paper: last 5)
    assert calls == [(2, 2, True), (1, 2, True), (0, 2, True)] * 2
    assert {n: type(p) for n, p in model.parts.unet.attn_processors.items()} == before  # processors restored
    content = list(ControlNet.generate(model, conds, RunContext(seed=3)))  # Stage 1 alone, same seed
    assert len(out) == 3
    for sample, stage1, cond in zip(out, content, conds):
        assert sample.image.shape == (3, 32, 32) and sample.image.dtype == torch.float32
        assert 0 <= sample.image.min() and sample.image.max() <= 1 and torch.isfinite(sample.image).all()
        assert torch.equal(sample.mask, resize_mask(cond.mask, 32)) and sample.prompt == "An image of lesion on skin."
        assert (sample.image - stage1.image).abs().mean() > 1e-3  # Stage 2 changed the ControlNet's sample
    model.save(tmp_path / "state")
    assert (tmp_path / "state" / "controlnet" / "diffusion_pytorch_model.safetensors").is_file()
    reloaded = ControlNetStyleID(_tiny_config(tiny_sd))
    reloaded.load(tmp_path / "state")
    for a, b in zip(out, reloaded.generate(conds, RunContext(seed=3))):
        torch.testing.assert_close(a.image, b.image)


def test_deterministic_and_batch_independent(tiny_sd, derm):
    train, val = derm
    model = ControlNetStyleID(_tiny_config(tiny_sd))
    conds = _conditions(train, val, 3, first_index=5)
    first = torch.stack([s.image for s in model.generate(conds, RunContext(seed=11))])
    torch.manual_seed(123)  # the global random state plays no part
    second = torch.stack([s.image for s in model.generate(conds, RunContext(seed=11))])
    alone = next(model.generate(conds[1:2], RunContext(seed=11))).image  # seeded per condition index, not position
    model.config = _tiny_config(tiny_sd, generate_batch=3)
    rebatched = torch.stack([s.image for s in model.generate(conds, RunContext(seed=11))])
    other = torch.stack([s.image for s in model.generate(conds, RunContext(seed=12))])
    assert torch.equal(first, second)
    torch.testing.assert_close(alone, first[1], atol=1e-4, rtol=0)  # batching changes only the float summation order
    torch.testing.assert_close(rebatched, first, atol=1e-4, rtol=0)
    assert (first - other).abs().mean() > 1e-3


def test_styleid_moves_colour_statistics_toward_the_reference_on_mini_sd():
    """Same seed, same masks: the StyleID output's per-channel RGB mean/std are closer to each condition's reference
    than the ControlNet-only output's; the references are the darkest and lightest derm-mini images, so the
    direction differs per condition."""
    train = list(DermMini(image_size=64, sizes={"train": 40, "val": 1, "test": 1}).load("train"))
    lum = torch.tensor([float(s.image.mean()) for s in train])
    order = lum.argsort().tolist()
    refs = [order[0], order[-1], order[1], order[-2]]  # dark, light, dark, light
    conds = [Condition(mask=train[k].mask, reference=train[r].image, meta={"index": k}) for k, r in enumerate(refs)]
    config = ControlNetStyleIDConfig(backbone="mini-sd", resolution=32, sampler="ddim", sample_steps=8,
                                     guidance_scale=3.0, style_steps=8, inject_layers=2, generate_batch=4)
    model = ControlNetStyleID(config)  # an untrained ControlNet: Stage 1 is the backbone's sample from the seed
    content = torch.stack([s.image for s in ControlNet.generate(model, conds, RunContext(seed=0))])
    stylised = torch.stack([s.image for s in model.generate(conds, RunContext(seed=0))])
    model.config = dataclasses.replace(config, adain_init=False)
    injected = torch.stack([s.image for s in model.generate(conds, RunContext(seed=0))])
    references = torch.stack([resize_image(c.reference, 32) for c in conds])
    before, after = colour_distance(content, references), colour_distance(stylised, references)
    kv_only = colour_distance(injected, references)
    print(f"colour distance to the reference: controlnet {before.tolist()}, styleid {after.tolist()}, "
          f"injection only {kv_only.tolist()}")
    assert (after < before).all(), (before, after)
    assert after.mean() < 0.7 * before.mean(), (before, after)
    assert kv_only.mean() < before.mean(), (before, kv_only)  # the K/V injection alone moves toward the style too


def test_errors_name_the_fix(tmp_path, tiny_sd, derm):
    from bench.runner import RunConfig, resolve

    train, val = derm
    caps = ControlNetStyleID.capabilities
    lowcontrast = resolve(RunConfig(task="lowcontrast", method="controlnet-styleid", profile="smoke")).task
    assert lowcontrast.incompatibility(caps) is None
    gen_masks = resolve(RunConfig(task="seg-aug", method="controlnet-styleid", profile="smoke",
                                  sets=["task.conditioning=generated-masks", "task.mask_source=x"])).task
    assert "but the method requires ['reference']" in gen_masks.incompatibility(caps)  # generated masks: no reference
    model = ControlNetStyleID(_tiny_config(tiny_sd))
    with pytest.raises(ValueError, match="needs a reference .* condition 1 has none"):
        list(model.generate([Condition(mask=val[0].mask, reference=train[0].image), Condition(mask=val[1].mask)],
                            RunContext()))
    with pytest.raises(ValueError, match="needs a mask in every condition; condition 0"):
        list(model.generate([Condition(reference=train[0].image)], RunContext()))
    with pytest.raises(FileNotFoundError, match="backbone folder not found: .*nowhere"):
        ControlNetStyleID(_tiny_config(tmp_path / "nowhere")).fit(train[:2], RunContext())

    cli = CliRunner()
    for extra in (["--task", "derm-cls"], ["--task", "lowcontrast", "--set", f"method.backbone={tmp_path / 'nowhere'}"]):
        result = cli.invoke(app, ["run", "--method", "controlnet-styleid", "--profile", "smoke", "--work-dir",
                                  str(tmp_path / "w"), "--no-progress", "--quiet", "--threads", "1", *extra])
        lines = [ln for ln in result.output.splitlines() if ln.strip()]
        assert result.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error:"), result.output
    assert "requires" in cli.invoke(app, ["run", "--method", "controlnet-styleid", "--task", "derm-cls", "--profile",
                                          "smoke", "--work-dir", str(tmp_path / "w")]).output
    assert not list((tmp_path / "w").glob("records/*.json"))  # nothing half-written


def test_smoke_bench_run_on_lowcontrast_writes_a_record(tmp_path):
    result = CliRunner().invoke(app, ["run", "--task", "lowcontrast", "--method", "controlnet-styleid", "--profile",
                                      "smoke", "--work-dir", str(tmp_path), "--no-progress", "--quiet", "--threads",
                                      "1"])
    assert result.exit_code == 0, result.output
    records = list((tmp_path / "records").glob("*.json"))
    assert len(records) == 1
    rec = json.loads(records[0].read_text())
    assert rec["method"]["id"] == "controlnet-styleid" and rec["profile"] == "smoke"
    assert rec["n"]["generated"] == rec["n"]["low_contrast_train"] > 0
    assert rec["config"]["method"]["style_steps"] == 4 and rec["config"]["method"]["query_gamma"] == 0.75
    assert "iou[S_0.6]" in rec["metrics"]


def test_profiles_build_and_registry():
    from bench.registry import METHODS

    assert METHODS.get("controlnet-styleid") is ControlNetStyleID
    yaml = Path(__file__).resolve().parents[2] / "baselines" / "controlnet_styleid" / "config.yaml"
    built = {p: build(ControlNetStyleIDConfig, profile_section(yaml, p), p) for p in ("paper", "mini", "smoke")}
    for cfg in built.values():
        cfg.validate()
    paper = built["paper"]
    assert (paper.query_gamma, paper.attn_temperature, paper.inject_layers, paper.style_steps, paper.adain_init) == \
        (0.75, 1.5, 5, 50, True)
    assert (built["mini"].style_steps, built["mini"].inject_layers, built["smoke"].backbone) == (20, 2, "mini-sd")
    controlnet_yaml = yaml.parents[1] / "controlnet" / "config.yaml"
    for p in ("paper", "mini"):  # Stage 1 is the controlnet baseline's profile
        stage1 = build(ControlNetConfig, profile_section(controlnet_yaml, p), p)
        ours = built[p]
        assert {k: getattr(ours, k) for k in stage1.__dataclass_fields__ if k != "generate_batch"} == \
            {k: getattr(stage1, k) for k in stage1.__dataclass_fields__ if k != "generate_batch"}
    from bench.config import ConfigError

    with pytest.raises(ConfigError, match="query_gamma"):
        ControlNetStyleIDConfig(query_gamma=2.0).validate()
