"""Issue 22: what chapter 4-5 tasks give generators in the paper profile (tiny real-layout folders, the mini world).

Generators read their own view of the data at their resolution from the original files; lowcontrast conditions
ControlNet / IP-Adapter on the dual-branch method's generated masks; derm-cls reads HAM10000's lesion masks for
ISIC 2018 Task 3; `Task.describe_generator_inputs` states all of it for a dry run.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from bench.data.base import DataError
from bench.interface import RunContext, Sample
from bench.runner import RunConfig, resolve, save_shard
from bench.tasks.base import IncompatibleMethodError, format_generator_inputs
from bench.tasks.common import resize_image
from tests.data import data_layouts as layouts

CLASSES = ["MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC"]


def _textured(path: Path, size=(96, 72), seed=0) -> None:
    """A 96x72 image with fine detail (a 16 px view upsampled again cannot reproduce it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path)


def _mask(path: Path, size=(96, 72)) -> None:
    layouts.mask(path, size, box=(20, 15, 70, 55))


def _task1(root: Path) -> Path:
    folder = root / "ISIC2018"
    start = 0
    for split, n in (("Training", 6), ("Validation", 2), ("Test", 2)):
        for i in range(start, start + n):
            _textured(folder / f"ISIC2018_Task1-2_{split}_Input" / f"ISIC_{i:07d}.jpg", seed=i)
            _mask(folder / f"ISIC2018_Task1_{split}_GroundTruth" / f"ISIC_{i:07d}_segmentation.png")
        start += n
    return root


def _task3(root: Path, ham_masks: bool = True, skip_mask: str | None = None) -> Path:
    """ISIC 2018 Task 3 (no masks) plus HAM10000 (same training ids) with Tschandl 2020 masks."""
    folder = root / "ISIC2018"
    ham = root / "HAM10000"
    start, train_rows = 24306, []
    for split, n in (("Training", 7), ("Validation", 7), ("Test", 7)):
        rows = []
        for k, i in enumerate(range(start, start + n)):
            sid = f"ISIC_{i:07d}"
            _textured(folder / f"ISIC2018_Task3_{split}_Input" / f"{sid}.jpg", seed=i)
            rows.append([sid, *[1.0 if c == k % 7 else 0.0 for c in range(7)]])
            if split == "Training":
                train_rows.append([f"HAM_{k:07d}", sid, CLASSES[k % 7].lower()])
                _textured(ham / "HAM10000_images_part_1" / f"{sid}.jpg", seed=i)
                if ham_masks and sid != skip_mask:
                    _mask(ham / "HAM10000_segmentations_lesion_tschandl" / f"{sid}_segmentation.png")
        layouts.write_csv(folder / f"ISIC2018_Task3_{split}_GroundTruth" / f"ISIC2018_Task3_{split}_GroundTruth.csv",
                          ["image", *CLASSES], rows)
        start += n
    layouts.write_csv(ham / "HAM10000_metadata.csv", ["lesion_id", "image_id", "dx"], train_rows)
    return root


def _paper(task: str, method: str, *sets: str):
    return resolve(RunConfig(task=task, method=method, profile="paper", sets=list(sets))).task


# -- 1. generator input resolution ---------------------------------------------------------------------------

@pytest.mark.parametrize("task_id,method,sets", [
    ("seg-aug", "didgen", ["task.image_size=16", "task.generator_image_size=64", "task.transfer_dataset=null"]),
    ("lowcontrast", "dualbranch", ["task.image_size=16", "task.generator_image_size=64",
                                   "task.external_dataset=null", "task.ita_threshold=90"]),
    ("derm-quality", "didgen", ["task.image_size=16", "task.generator_image_size=64", "task.ms_ssim_window=1"]),
])
def test_generators_read_the_original_files_at_their_resolution(tmp_path, task_id, method, sets) -> None:
    root = _task1(tmp_path)
    task = _paper(task_id, method, *sets)
    ctx = RunContext(data_root=root, work_dir=tmp_path / "w")
    data = task.load(ctx)
    assert data.splits["train"][0].image.shape[-1] == 16  # the downstream models keep their view
    fit = task.fit_set(data)
    direct = layouts_view(root, 64)
    assert fit[0].image.shape == (3, 64, 64)
    # read from the file at 64 px, not the 16 px view upsampled (which is what generators got before)
    assert torch.allclose(fit[0].image, direct.image, atol=1e-6)
    upsampled = resize_image(data.splits["train"][0].image, 64)
    assert (fit[0].image - upsampled).abs().mean() > 0.05
    conds = task.conditions(data, ctx)
    assert conds[0].reference.shape[-1] == 64
    if task_id != "derm-quality":
        assert conds[0].mask.shape[-1] == 64


def layouts_view(root: Path, size: int) -> Sample:
    from bench.data.isic import Isic2018Task1

    return Isic2018Task1(root=root, image_size=size).load("train")[0]


def test_derm_cls_generator_view_and_paper_defaults(tmp_path) -> None:
    root = _task3(tmp_path)
    task = _paper("derm-cls", "didgen", "task.transfer_dataset=null", "task.variant=mini", "task.image_size=16",
                  "task.generator_image_size=64")
    assert task.config.fit_masks == "ham10000"
    data = task.load(RunContext(data_root=root))
    fit = task.fit_set(data)
    assert data.splits["train"][0].image.shape[-1] == 16 and fit[0].image.shape[-1] == 64
    assert all(s.label != CLASSES.index("NV") for s in fit)


def test_paper_profiles_read_generator_inputs_at_512() -> None:
    for task_id, method in (("seg-aug", "didgen"), ("derm-cls", "didgen"), ("derm-quality", "didgen"),
                            ("lowcontrast", "dualbranch")):
        task = _paper(task_id, method)
        assert task.config.generator_image_size == 512
        assert task.config.image_size < 512


# -- 2. chapter 5 baselines on the dual-branch method's masks ------------------------------------------------

@pytest.mark.parametrize("profile", ["paper", "mini"])
def test_lowcontrast_refuses_controlnet_on_real_masks(profile) -> None:
    from bench.runner import BenchError, plan_run

    with pytest.raises(BenchError, match="task.conditioning=generated-masks"):
        plan_run(RunConfig(task="lowcontrast", method="controlnet", profile=profile))
    resolved = resolve(RunConfig(task="lowcontrast", method="ip-adapter", profile=profile))
    with pytest.raises(IncompatibleMethodError, match="masks dualbranch generated"):
        resolved.task.check_method("ip-adapter", resolved.method_cls.capabilities)


def test_lowcontrast_generated_masks_condition_in_order_with_real_style_references(tmp_path) -> None:
    plain = resolve(RunConfig(task="lowcontrast", method="dualbranch", profile="smoke")).task
    data = plain.load(RunContext())
    n = len(data.extra["low_contrast"])
    shards = tmp_path / "gen"
    shards.mkdir()
    made = [Sample(image=torch.rand(3, 32, 32), mask=torch.rand(32, 32) > 0.5, meta={"index": i}) for i in range(n)]
    save_shard(made[: n // 2], shards / "shard-00000")
    save_shard(made[n // 2:], shards / "shard-00001")
    task = resolve(RunConfig(task="lowcontrast", method="controlnet", profile="smoke",
                             sets=["task.conditioning=generated-masks", f"task.mask_source={shards}"])).task
    task.check_method("controlnet", resolve(RunConfig(task="lowcontrast", method="controlnet",
                                                      profile="smoke")).method_cls.capabilities)
    conds = task.conditions(data, RunContext(work_dir=tmp_path))
    train = data.splits["train"]
    for k, cond in enumerate(conds):
        assert torch.equal(cond.mask, made[k].mask)
        assert torch.equal(cond.reference, train[data.extra["low_contrast"][k]].image)
    rows = task.describe_generator_inputs("controlnet", {})
    assert any("generated by run" in r["source"] for r in rows)
    assert task.recorded_config({"mask_source": str(shards)}, tmp_path)["mask_source"] == "gen"
    bad = resolve(RunConfig(task="lowcontrast", method="controlnet", profile="smoke",
                            sets=["task.conditioning=generated-masks", f"task.mask_source={shards}",
                                  "task.ratio=2"])).task
    with pytest.raises(DataError, match="generated masks for"):
        bad.conditions(data, RunContext(work_dir=tmp_path))


def test_controlnet_readme_states_the_thesis_protocol() -> None:
    text = (Path(__file__).parents[2] / "baselines" / "controlnet" / "README.md").read_text()
    assert "generated-masks" in text and "5.4.1" in text


# -- 3. DiDGen on ISIC 2018 Task 3: HAM10000's masks ---------------------------------------------------------

def test_derm_cls_fit_set_carries_ham10000_masks(tmp_path) -> None:
    root = _task3(tmp_path)
    task = _paper("derm-cls", "didgen", "task.transfer_dataset=null", "task.variant=mini", "task.image_size=32")
    data = task.load(RunContext(data_root=root))
    fit = task.fit_set(data)
    assert len(fit) == 6 and all(s.mask is not None and s.mask.shape[-1] == 512 for s in fit)
    # the box of the HAM10000 mask file, at 512 px
    frac = float(fit[0].mask.float().mean())
    assert frac == pytest.approx((50 * 40) / (96 * 72), abs=0.02)
    mask_conds = _paper("derm-cls", "controlnet", "task.transfer_dataset=null", "task.variant=mini",
                        "task.image_size=32", "task.conditioning=mask", "task.n_per_class=1").conditions(data, RunContext())
    assert all(c.mask is not None for c in mask_conds)


def test_derm_cls_missing_ham10000_masks_is_one_clear_error(tmp_path) -> None:
    root = _task3(tmp_path, skip_mask="ISIC_0024306")
    task = _paper("derm-cls", "didgen", "task.transfer_dataset=null", "task.variant=mini", "task.image_size=32")
    with pytest.raises(DataError, match="no lesion mask for 1 of the 6 fit images.*task.fit_masks=none"):
        task.load(RunContext(data_root=root))
    none = _paper("derm-cls", "sd-finetune", "task.transfer_dataset=null", "task.variant=mini", "task.image_size=32",
                  "task.fit_masks=none")
    data = none.load(RunContext(data_root=root))
    assert all(s.mask is None for s in none.fit_set(data))


# -- 4./5. class and DermPrompt together; DermPrompt never vanishes silently ---------------------------------

def _didgen(profile: str = "smoke", *sets: str):
    from methods.didgen.method import DiDGen

    resolved = resolve(RunConfig(task="derm-cls", method="didgen", profile=profile, sets=list(sets)))
    return resolved.task, DiDGen(resolved.method_config)


def _capture_fit(monkeypatch, method) -> dict:
    import bench.diffusion.t2i_finetune as train

    seen: dict = {}
    monkeypatch.setattr(method, "_ensure_model", lambda: None)
    monkeypatch.setattr(train, "finetune", lambda parts, images, masks, captions, *a, **k: seen.update(captions=captions) or [])
    return seen


def test_class_and_dermprompt_together_in_training_and_generation(tmp_path, monkeypatch) -> None:
    task, method = _didgen("smoke", "method.prompt=dermprompt")
    data = task.load(RunContext())
    fit = task.fit_set(data)
    ids = [str(s.meta["id"]) for s in fit]
    captions = tmp_path / "captions.csv"
    layouts.write_csv(captions, ["id", "caption"], [[i, f"An image of lesion on skin. spotted lesion number {k}"]
                                                    for k, i in enumerate(ids)])
    task, method = _didgen("smoke", "method.prompt=dermprompt", f"method.caption_file={captions}")
    seen = _capture_fit(monkeypatch, method)
    method.fit(fit, RunContext())
    first = seen["captions"][0]
    assert first.startswith("A dermoscopic image of ") and "spotted lesion number 0" in first  # class kept
    assert all("dermoscopic image of" not in c for c in method.captions)  # DermPrompts alone
    conds = task.conditions(data, RunContext())
    prompt = method._prompt(conds[0], 0)
    word = task.config.class_words[conds[0].meta["class_name"]]
    assert prompt.startswith(f"An image of <lesion> on <skin>. A dermoscopic image of {word}. spotted ")
    # the DermPrompt comes from a training image of the same class
    k = int(prompt.rsplit(" ", 1)[1])
    assert fit[k].label == conds[0].label


def test_paper_default_conditions_on_the_class(monkeypatch) -> None:
    for method_id in ("didgen", "sd-finetune", "dreambooth"):
        resolved = resolve(RunConfig(task="derm-cls", method=method_id, profile="paper"))
        assert resolved.method_config.prompt == "condition", method_id
        method = resolved.method_cls(resolved.method_config)
        from bench.interface import Condition

        text = method._prompt(Condition(label=0, prompt=resolved.task.prompt_for("MEL")), 0)
        assert "melanoma" in text, (method_id, text)


def test_missing_captions_is_an_error_naming_the_caption_command(monkeypatch) -> None:
    from bench.errors import UserInputError
    from bench.interface import Condition

    task, method = _didgen("smoke")
    seen = _capture_fit(monkeypatch, method)
    bare = [Sample(image=torch.rand(3, 8, 8), mask=torch.zeros(8, 8, dtype=torch.bool), label=0,
                   meta={"id": f"x{i}"}) for i in range(3)]
    with pytest.raises(UserInputError, match="bench derm caption"):
        method.fit(bare, RunContext())
    _, lenient = _didgen("smoke", "method.require_captions=false", "method.prompt=dermprompt")
    _capture_fit(monkeypatch, lenient)
    lenient.fit(bare, RunContext())
    with pytest.raises(UserInputError, match="no DermPrompt to draw from"):
        lenient._prompt(Condition(label=0), 0)
    assert "captions" not in seen


def test_prompt_file_replaces_recycled_captions(tmp_path, monkeypatch) -> None:
    from bench.interface import Condition

    prompts = tmp_path / "prompts.csv"
    layouts.write_csv(prompts, ["caption", "class"], [["brand new melanoma text", "MEL"], ["new vascular text", "VASC"]])
    task, method = _didgen("smoke", "method.prompt=dermprompt", f"method.prompt_file={prompts}")
    _capture_fit(monkeypatch, method)
    method.fit(task.fit_set(task.load(RunContext())), RunContext())
    text = method._prompt(Condition(label=0, prompt=task.prompt_for("MEL"), meta={"class_name": "MEL"}), 3)
    assert text.endswith("brand new melanoma text")


# -- the plan: describe_generator_inputs ---------------------------------------------------------------------

def test_describe_generator_inputs_for_table_cells() -> None:
    didgen_42 = resolve(RunConfig(task="derm-cls", method="didgen", profile="paper"))
    rows = didgen_42.task.describe_generator_inputs("didgen", didgen_42.method_config)
    text = "\n".join(format_generator_inputs(rows))
    assert "512 px from the original files" in text and "HAM10000" in text and "class prompt" in text
    dp = resolve(RunConfig(task="derm-cls", method="didgen", profile="paper", sets=["method.prompt=dermprompt"]))
    assert "class prompt + DermPrompt (recycled training captions" in \
        dp.task.describe_generator_inputs("didgen", dp.method_config)[1]["prompt"]
    cn = resolve(RunConfig(task="lowcontrast", method="controlnet", profile="paper",
                           sets=["task.conditioning=generated-masks", "task.mask_source=lc-dualbranch"]))
    rows = cn.task.describe_generator_inputs("controlnet", cn.method_config)
    assert "masks generated by run lc-dualbranch" in rows[1]["source"] and "512" in rows[1]["resolution"]
    seg = resolve(RunConfig(task="seg-aug", method="controlnet", profile="paper",
                            sets=["task.conditioning=generated-masks", "task.mask_source=seg-didgen"]))
    assert "DiDGen" in seg.task.describe_generator_inputs("controlnet", seg.method_config)[1]["source"]
    assert all(set(r) == {"input", "resolution", "source", "prompt"} for r in rows)


# -- 6. seg-aug's mask-to-image baselines on DiDGen's masks; 8-10. thesis values in the paper profile ---------

@pytest.mark.parametrize("profile", ["paper", "mini"])
def test_seg_aug_refuses_mask_baselines_on_real_masks(profile) -> None:
    from bench.runner import BenchError, plan_run

    for method in ("controlnet", "pix2pixhd", "zestguide", "attn-refocus"):
        with pytest.raises(BenchError, match="masks didgen generated.*task.mask_source"):
            plan_run(RunConfig(task="seg-aug", method=method, profile=profile))
    resolved = resolve(RunConfig(task="seg-aug", method="controlnet", profile=profile,
                                 sets=["task.conditioning=generated-masks", "task.mask_source=seg-didgen-s1k"]))
    resolved.task.check_method("controlnet", resolved.method_cls.capabilities)


def test_paper_profile_takes_the_thesis_values() -> None:
    ip = resolve(RunConfig(task="lowcontrast", method="ip-adapter", profile="paper")).method_config
    assert (ip.lr, ip.batch_size, ip.steps) == (1e-5, 4, 20000)  # thesis 5.4.1 "all models"
    assert resolve(RunConfig(task="lowcontrast", method="ip-adapter", profile="mini")).method_config.lr == 1e-3
    dual = resolve(RunConfig(task="lowcontrast", method="dualbranch", profile="paper")).method_config
    assert dual.inject_layers is None  # every decoder self-attention layer
    assert resolve(RunConfig(task="seg-aug", method="didgen", profile="paper")).method_config.gaussian_smoothing


# -- 11. transfer / external sets name the data they were computed on ----------------------------------------

def test_a_real_dataset_is_never_scored_on_the_mini_transfer_world(tmp_path, caplog) -> None:
    root = _task1(tmp_path)
    task = resolve(RunConfig(task="seg-aug", method="real-only", profile="mini", dataset="isic2018-task1")).task
    assert task.config.transfer_dataset == "derm-mini"  # the mini profile's PH2 twin
    data = task.load(RunContext(data_root=root))
    assert "transfer" not in data.splits and "procedural world" in caplog.text
    cls = resolve(RunConfig(task="lowcontrast", method="real-only", profile="mini", dataset="isic2018-task1",
                            sets=["task.ita_threshold=90"])).task
    assert "external" not in cls.load(RunContext(data_root=root)).splits


def test_mini_lowcontrast_has_the_ham10000_twin_of_table_5_4() -> None:
    task = resolve(RunConfig(task="lowcontrast", method="real-only", profile="smoke")).task
    data = task.load(RunContext())
    assert len(data.splits["external"]) == 24 and task.config.external_key == "ham10000"


def _tiny_llm(folder: Path) -> Path:
    """A tiny random causal LM folder (GPT-2 layout) with a word-level tokenizer, loadable like a real one."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from bench.foundation.tokenizer import build_clip_tokenizer

    words = ["lesion", "skin", "brown", "pink", "round", "irregular", "dots", "network", "hair", "with", "on", "a"]
    tokenizer = build_clip_tokenizer(words, folder, model_max_length=512)
    tokenizer.save_pretrained(str(folder))
    torch.manual_seed(0)
    GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), n_layer=1, n_head=2, n_embd=16, n_positions=512,
                               bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
                    ).save_pretrained(str(folder))
    return folder


def test_rephrase_writes_new_dermprompts_per_class_from_a_local_llm(tmp_path) -> None:
    from bench.errors import UserInputError
    from bench.diffusion.rephrase import build_request, rephrase_captions

    folder = _tiny_llm(tmp_path / "llm")
    captions = ["brown round lesion", "brown lesion with dots", "pink irregular lesion", "pink lesion on skin"]
    out = rephrase_captions(folder, captions, [0, 0, 1, 1], n_examples=2, count=2, seed=3, max_new_tokens=8)
    again = rephrase_captions(folder, captions, [0, 0, 1, 1], n_examples=2, count=2, seed=3, max_new_tokens=8)
    assert out == again and out and {label for _, label in out} <= {0, 1}
    assert all(isinstance(text, str) and text and "\n" not in text for text, _ in out)
    assert "- brown round lesion" in build_request(["brown round lesion"])
    with pytest.raises(UserInputError, match="rephrase_model"):
        rephrase_captions(tmp_path / "missing", captions, None)


def test_sweep_dry_run_prints_each_cells_generator_inputs(tmp_path) -> None:
    from typer.testing import CliRunner

    from bench.cli import app

    sweep = tmp_path / "cells.yaml"
    sweep.write_text("""name: cells
defaults: {profile: smoke, seed: 0}
runs:
  - {name: lc-dualbranch, task: lowcontrast, method: dualbranch}
  - name: lc-controlnet
    task: lowcontrast
    method: controlnet
    set: {task.conditioning: generated-masks, task.mask_source: "{run:lc-dualbranch}"}
    after: [lc-dualbranch]
""")
    out = CliRunner().invoke(app, ["sweep", str(sweep), "--dry-run", "--inputs", "--work-dir", str(tmp_path / "w")],
                             env={"COLUMNS": "200"})
    assert out.exit_code == 0, out.output
    text = " ".join(out.output.split("generator inputs per run:")[1].split())  # lines are wrapped to the terminal
    assert "lc-controlnet (lowcontrast x controlnet):" in text
    assert "masks generated by run lowcontrast__dualbranch__derm-mini__smoke__s0__" in text
    assert "training text: prefix + DermPrompt from the dataset's captions (the prefix alone" in text


def test_dreambooth_paper_trains_on_class_and_dermprompt() -> None:
    resolved = resolve(RunConfig(task="derm-cls", method="dreambooth", profile="paper"))
    method = resolved.method_cls(resolved.method_config)
    sample = Sample(image=torch.rand(3, 8, 8), label=0, prompt="An image of lesion on skin. brown round lesion",
                    meta={"id": "a", "class_name": "MEL"})
    assert method._instance_texts([sample]) == ["A dermoscopic image of melanoma. brown round lesion"]
