"""The cases of docs/bad-inputs.md that no other test file holds, and a check that the document stays true:
every row names a test that exists.

Each case runs the real command line and checks the one line the user sees and that no record was written."""
from __future__ import annotations

import ast
import errno
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from bench.cli import app
from bench.store import with_provenance

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests" / "data"))  # data_layouts: datasets in their distributed layouts
import data_layouts as L  # noqa: E402

FAST = ["--set", "task.segmenters=[unet]", "--set", "task.max_epochs=1", "--set", "task.n_generate=8"]
SPLIT_FOLDERS = {"train": ("Training", 0), "val": ("Validation", 4), "test": ("Test", 6)}


def bench(*args: str):
    return CliRunner().invoke(app, list(args))


def run(work: Path, *args: str):
    return bench("run", "--work-dir", str(work), "--threads", "1", "--no-progress", *args)


def one_error_line(result) -> str:
    lines = [ln for ln in result.output.splitlines() if ln.strip() and not ln.lstrip().startswith(("INFO", "WARNING"))]
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    return lines[0]


def records_in(work: Path) -> list[str]:
    return sorted(p.name for p in (work / "records").iterdir()) if (work / "records").is_dir() else []


def no_record(work: Path) -> bool:
    return records_in(work) == []


# -- ids, pairs and configs: refused before any work ----------------------------------------------------------------
def _configs(tmp: Path) -> dict[str, Path]:
    files = {"bad.yaml": "task: {max_epochs: 3\n", "unknown.yaml": "task:\n  nonsense_key: 3\n",
             "type.yaml": "task:\n  max_epochs: many\n", "list.yaml": "- a\n- b\n"}
    for name, text in files.items():
        (tmp / name).write_text(text)
    return {name: tmp / name for name in files}


REFUSED_UP_FRONT = {
    "unknown task": (["--task", "nope", "--method", "real-only"],
                     "error: Unknown task 'nope'. Valid tasks: "),
    "unknown method": (["--task", "seg-aug", "--method", "nope"],
                       "error: Unknown method 'nope'. Did you mean: noise? Valid methods: "),
    "unknown dataset": (["--task", "seg-aug", "--dataset", "nope", "--method", "real-only"],
                        "error: Unknown dataset 'nope'. Valid datasets: "),
    "unknown profile": (["--task", "seg-aug", "--profile", "nope", "--method", "real-only"],
                        "error: unknown profile 'nope'; valid profiles: smoke, mini, paper"),
    "incompatible pair": (["--task", "seg-aug", "--method", "pgan"],
                          "error: Task 'seg-aug' cannot run method 'pgan': task needs a method returning ['image', "
                          "'mask']; it returns ['image']; conditions on ['mask'], which the method cannot follow (it "
                          "accepts ['label'])"),
    "pair needing a task option": (["--task", "derm-cls", "--method", "classic-aug"],
                                   "error: Task 'derm-cls' cannot run method 'classic-aug': task conditions on "
                                   "['label'], which the method cannot follow (it accepts ['mask', 'reference']); "
                                   "gives ['label', 'prompt'], but the method requires ['mask', 'reference']"),
    "malformed YAML": (["--config", "{tmp}/bad.yaml"],
                       "error: {tmp}/bad.yaml: malformed YAML (while parsing a flow mapping)"),
    "unknown key in --config": (["--config", "{tmp}/unknown.yaml"],
                                "error: unknown task config key 'nonsense_key'; valid keys: dataset, "),
    "wrong type in --config": (["--config", "{tmp}/type.yaml"],
                               "error: task.max_epochs: expected an integer, got 'many'"),
    "--config not a mapping": (["--config", "{tmp}/list.yaml"],
                               "error: {tmp}/list.yaml: expected a mapping at the top level, got list"),
    "--config missing": (["--config", "{tmp}/missing.yaml"], "error: --config {tmp}/missing.yaml: not a file"),
    "--config a folder": (["--config", "{tmp}"], "error: --config {tmp}: not a file"),
    "seed beyond 64 bits": (["--seed", str(2 ** 64)], f"error: --seed {2 ** 64}: a seed is an integer from 0 to "
                                                       "2**63 - 1 (9223372036854775807)"),
    "negative --threads": (["--threads", "-2"], "error: --threads -2: must be at least 1 (leave it out for "
                                                "$OMP_NUM_THREADS, else min(2, cores))"),
    "--set without =": (["--set", "task.max_epochs"], "error: --set 'task.max_epochs': expected key=value"),
    "--set unknown key": (["--set", "task.nope=1"], "error: unknown --set key 'task.nope': task has no key 'nope'; "),
    "--set wrong type": (["--set", "task.max_epochs=abc"], "error: task.max_epochs: expected an integer, got 'abc'"),
    "--set out of range": (["--set", "task.max_epochs=-3"], "error: task.max_epochs=-3: must be >= 1"),
    "--data-root missing": (["--data-root", "{tmp}/nothere"], "error: --data-root {tmp}/nothere: no such folder"),
    "disk dataset without --data-root": (["--dataset", "ph2"],
                                         "error: dataset 'ph2' is read from disk: pass --data-root DIR (see `bench "
                                         "data info ph2` for the expected layout)"),
}


@pytest.mark.parametrize("case", list(REFUSED_UP_FRONT))
def test_ids_pairs_and_configs_are_refused_before_any_work(tmp_path, case):
    _configs(tmp_path)
    args, expected = REFUSED_UP_FRONT[case]
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    if "--task" not in args:
        args = ["--task", "seg-aug", "--method", "real-only", *args]
    line = one_error_line(run(tmp_path / "w", "--profile", "smoke", *args)
                          if "--profile" not in args else run(tmp_path / "w", *args))
    expected = expected.replace("{tmp}", str(tmp_path))
    assert line == expected if not expected.endswith(" ") else line.startswith(expected)
    assert not (tmp_path / "w").exists()  # nothing at all was written, not even a cache folder


# -- bad files in every split, found before any work -----------------------------------------------------------------
def isic_folder(root: Path) -> Path:
    """isic2018-task1 with 4 / 2 / 2 train / val / test pairs and the PH2 transfer set beside it."""
    L.ph2_flat(root, ["IMD002", "IMD003"], ["Common Nevus", "Melanoma"])
    return L.isic2018_task1(root, {"Training": 4, "Validation": 2, "Test": 2})


def split_files(folder: Path, split: str) -> tuple[Path, Path]:
    name, first = SPLIT_FOLDERS[split]
    return (folder / f"ISIC2018_Task1-2_{name}_Input" / f"ISIC_{first:07d}.jpg",
            folder / f"ISIC2018_Task1_{name}_GroundTruth" / f"ISIC_{first:07d}_segmentation.png")


def run_isic(root: Path, work: Path, *extra: str):
    return run(work, "--task", "seg-aug", "--dataset", "isic2018-task1", "--data-root", str(root), "--method",
               "real-only", "--profile", "smoke", *FAST, *extra)


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_a_missing_mask_in_any_split_stops_the_run_before_work(tmp_path, split):
    folder = isic_folder(tmp_path / "data")
    image, mask = split_files(folder, split)
    mask.unlink()
    line = one_error_line(run_isic(tmp_path / "data", tmp_path / "w"))
    assert line == (f"error: {folder}: 1 image(s) of split '{split}' have no mask, e.g. {image} "
                    "(run 'bench data check isic2018-task1')")
    assert not (tmp_path / "w").exists()


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_an_unreadable_image_in_any_split_stops_the_run_before_work(tmp_path, split):
    folder = isic_folder(tmp_path / "data")
    image, _ = split_files(folder, split)
    image.write_bytes(image.read_bytes()[:40])  # truncated JPEG
    line = one_error_line(run_isic(tmp_path / "data", tmp_path / "w"))
    assert line == f"error: {image}: unreadable image (OSError: Truncated File Read)"
    assert not (tmp_path / "w").exists()


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_an_empty_split_stops_the_run_before_work(tmp_path, split):
    folder = isic_folder(tmp_path / "data")
    image, mask = split_files(folder, split)
    for path in (*image.parent.glob("*.jpg"), *mask.parent.glob("*.png")):
        path.unlink()
    line = one_error_line(run_isic(tmp_path / "data", tmp_path / "w"))
    assert line == f"error: dataset 'isic2018-task1' split '{split}' is empty"
    assert not (tmp_path / "w").exists()


def _anti_aliased(mask: Path) -> str:
    values = np.zeros((10, 12), dtype=np.uint8)
    values[2:5, 2:6], values[5, 2:6] = 255, 100  # a lesion with a soft lower edge
    Image.fromarray(values).save(mask)
    return "non-binary mask: values [0, 100, 255]"


def _wrong_size(mask: Path) -> str:
    L.mask(mask, size=(20, 16))
    return "size mismatch: mask 20x16, image 12x10"


@pytest.mark.parametrize("split", ["train", "val", "test"])
@pytest.mark.parametrize("spoil", [_anti_aliased, _wrong_size])
def test_a_non_binary_or_wrong_size_mask_in_any_split_stops_the_run_before_work(tmp_path, split, spoil):
    folder = isic_folder(tmp_path / "data")
    _, mask = split_files(folder, split)
    says = spoil(mask)
    assert one_error_line(run_isic(tmp_path / "data", tmp_path / "w")) == f"error: {mask}: {says}"
    assert not (tmp_path / "w").exists()


# -- generated samples ----------------------------------------------------------------------------------------------
def test_a_generator_returning_nan_images_is_refused_before_its_shard_is_written(tmp_path):
    out = run(tmp_path, "--task", "seg-aug", "--method", "helpers:NaNPairs", "--profile", "smoke", *FAST)
    assert one_error_line(out) == ("error: method 'helpers:NaNPairs' returned a sample whose image holds NaN or "
                                   "infinite values (nothing of this shard was written)")
    assert not list(tmp_path.glob("generate/*/shard-*")) and no_record(tmp_path)


@pytest.mark.parametrize("task", ["seg-aug", "derm-quality"])
def test_constant_generated_images_are_scored_without_a_crash(tmp_path, task):
    extra = FAST if task == "seg-aug" else ["--set", "task.n_generate=8"]
    out = run(tmp_path, "--task", task, "--method", "helpers:ConstantImages", "--profile", "smoke", "--quiet", *extra)
    assert out.exit_code == 0, out.output
    (record,) = [json.loads(p.read_text()) for p in (tmp_path / "records").glob("*.json")]
    assert record["metrics"] and all(isinstance(v, float) and math.isfinite(v) for v in record["metrics"].values())


# -- weights --------------------------------------------------------------------------------------------------------
class _Payload:
    """Unpickling this touches ``path``: proof that a pickle was executed."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.touch, (self.path,))


def test_a_pickled_weights_file_is_refused_without_unpickling_it(tmp_path):
    weights = tmp_path / "w"
    weights.mkdir()
    torch.save({"x": _Payload(tmp_path / "pwned")}, weights / "weights-inception-2015-12-05-6726825d.pth")
    out = run(tmp_path / "runs", "--task", "derm-quality", "--method", "real-only", "--profile", "smoke",
              "--set", "task.extractor=inception-v3", "--set", f"task.weights_dir={weights}")
    line = one_error_line(out)
    assert line == (f"error: {weights}/weights-inception-2015-12-05-6726825d.pth is not a plain state dict loadable "
                    "with weights_only=True (UnpicklingError); convert it once on a trusted machine: "
                    "torch.save(torch.load(f, weights_only=False).state_dict(), out)")
    assert not (tmp_path / "pwned").exists() and no_record(tmp_path / "runs")


def test_a_pickled_bin_in_a_diffusers_folder_is_one_line_and_never_unpickled(tmp_path):
    """Where safetensors is expected (a Stable Diffusion folder), diffusers reads a .bin with weights_only=True."""
    from safetensors.torch import load_file

    from bench.diffusion.models import make_tiny_sd

    folder = make_tiny_sd(tmp_path / "sd", seed=0)
    safe = folder / "unet" / "diffusion_pytorch_model.safetensors"
    state = load_file(str(safe))
    safe.unlink()
    torch.save({**state, "payload": _Payload(tmp_path / "pwned")}, folder / "unet" / "diffusion_pytorch_model.bin")
    out = run(tmp_path / "runs", "--task", "seg-aug", "--method", "didgen", "--profile", "smoke",
              "--set", f"method.backbone={folder}", *FAST)
    bin_file = folder / "unet" / "diffusion_pytorch_model.bin"
    assert out.exit_code == 2 and out.output.splitlines()[-1] == (
        f"error: {folder}: could not load a component (Unable to load weights from checkpoint file for "
        f"'{bin_file}' at '{bin_file}'. )")
    assert not (tmp_path / "pwned").exists() and no_record(tmp_path / "runs")


def test_a_missing_weights_folder_is_one_line(tmp_path):
    out = run(tmp_path / "runs", "--task", "derm-quality", "--method", "real-only", "--profile", "smoke",
              "--set", "task.extractor=inception-v3", "--set", f"task.weights_dir={tmp_path / 'nothere'}")
    assert one_error_line(out) == (
        "error: missing FID Inception-v3 weights (torch-fidelity's weights-inception-2015-12-05-6726825d.pth): put it "
        f"at {tmp_path}/nothere/weights-inception-2015-12-05-6726825d.pth (weights dir from config or $BENCH_WEIGHTS); "
        "nothing is downloaded")
    assert no_record(tmp_path / "runs")


def test_the_paper_profile_without_its_weights_is_one_line(tmp_path, monkeypatch):
    monkeypatch.delenv("BENCH_WEIGHTS", raising=False)
    isic_folder(tmp_path / "data")
    common = ["--data-root", str(tmp_path / "data"), "--profile", "paper"]
    out = run(tmp_path / "runs", "--task", "seg-aug", "--method", "didgen", *common,
              "--set", "task.transfer_dataset=null")
    assert one_error_line(out) == (
        "error: DiDGen backbone folder not found: stable-diffusion-2-1-base (a diffusers Stable Diffusion folder, e.g. "
        "stable-diffusion-2-1-base saved with save_pretrained, or 'mini-sd')")
    out = run(tmp_path / "runs", "--task", "derm-quality", "--method", "real-only", *common)
    assert one_error_line(out) == ("error: no weights directory: pass weights_dir (config) or set "
                                   "BENCH_WEIGHTS=<folder holding the pretrained files>")
    assert no_record(tmp_path / "runs")


# -- disk (read-only work dir, full disk at the record: tests/test_cli_errors.py) -------------------------------------
def test_a_full_disk_while_a_shard_is_written_is_one_line_and_leaves_no_temporary(tmp_path, monkeypatch):
    write_bytes = Path.write_bytes

    def full(self, data):
        if self.name.endswith(".tmp.safetensors"):
            write_bytes(self, data[: len(data) // 2])  # part of it reached the disk
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return write_bytes(self, data)

    monkeypatch.setattr(Path, "write_bytes", full)
    out = run(tmp_path, "--task", "seg-aug", "--method", "classic-aug", "--profile", "smoke", *FAST)
    assert one_error_line(out) == f"error: cannot write in --work-dir {tmp_path}: No space left on device"
    assert no_record(tmp_path) and no_leftovers(tmp_path) and not list(tmp_path.glob("generate/*/shard-*"))


# -- a run killed at a stage, then rerun (fit, generate: tests/test_runner_locks.py) ---------------------------------
KILL_FAST = ["task.segmenters=[unet]", "task.max_epochs=2", "task.n_generate=8"]


def bench_process(work: Path, method: str) -> list[str]:
    return [sys.executable, "-m", "bench", "run", "--task", "seg-aug", "--method", method, "--profile", "smoke",
            "--threads", "1", "--no-progress", "--work-dir", str(work), *[a for s in KILL_FAST for a in ("--set", s)]]


def kill_when(cmd: list[str], env: dict[str, str], condition) -> None:
    """Start ``cmd``, SIGKILL it as soon as ``condition()`` holds (fails if it ends first)."""
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=err, text=True)
        try:
            deadline = time.monotonic() + 300  # a safety net only; the test waits for an event, not a duration
            while not condition():
                if proc.poll() is not None:
                    err.seek(0)
                    raise AssertionError(f"the run ended before it could be killed: {err.read()}")
                assert time.monotonic() < deadline, "gave up waiting for the stage to start"
                time.sleep(0.05)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()


def child_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO / "tests"), "OMP_NUM_THREADS": "1"}


def run_in_process(work: Path, method: str) -> tuple[dict, Path]:
    from bench.runner import RunConfig, run_one

    return run_one(RunConfig(task="seg-aug", method=method, profile="smoke", sets=KILL_FAST, threads=1,
                             work_dir=work, progress=False))


def no_leftovers(work: Path) -> bool:
    return not [p for p in work.rglob("*") if ".tmp" in p.name]


def test_a_run_killed_in_its_evaluation_leaves_no_record_and_the_rerun_evaluates(tmp_path):
    work = tmp_path / "w"
    kill_when(bench_process(work, "helpers:NoisePairs"), child_env(),
              lambda: bool(list(work.glob("evaluate/*/.lock"))))
    assert no_record(work) and not list(work.glob("evaluate/*/done.json"))
    record, path = run_in_process(work, "helpers:NoisePairs")
    assert record["cached"] == {"fit": True, "generate": True, "evaluate": False}
    reference, reference_path = run_in_process(tmp_path / "reference", "helpers:NoisePairs")
    assert record["metrics"] == reference["metrics"]
    scores = (path.parent / record["per_sample_file"]).read_text()
    assert scores == (reference_path.parent / reference["per_sample_file"]).read_text()  # image by image
    assert no_leftovers(work)


def test_a_run_killed_while_writing_its_record_is_completed_by_the_rerun(tmp_path):
    """A kill cannot be aimed inside a write, so the test leaves what one leaves: the per-sample scores written,
    the record's temporary half written (atomic_write_text's name), no record. The rerun reads every stage from the
    cache and writes the record; the hidden temporary is never read as a record."""
    whole, path = run_in_process(tmp_path, "helpers:NoisePairs")
    path.unlink()
    (path.parent / f".{path.name}.k1ll3d.tmp").write_text('{"schema_version": 1, "run')
    again, again_path = run_in_process(tmp_path, "helpers:NoisePairs")
    assert again_path == path and again["cached"] == {"fit": True, "generate": True, "evaluate": True}
    assert json.loads(path.read_text())["metrics"] == whole["metrics"]
    listed = bench("results", "--work-dir", str(tmp_path))
    rows = [line.split() for line in listed.output.splitlines() if line.startswith("helpers:NoisePairs")]
    # a wide table wraps into blocks that each repeat the method; the first block's seeds column counts the records
    assert listed.exit_code == 0 and rows and rows[0][:3] == ["helpers:NoisePairs", "-", "1"], listed.output
    assert sorted(p.name for p in path.parent.glob("*.json")) == [path.name]


# -- submissions: what the submitter sees, and nothing stored --------------------------------------------------------
#: A shipped record with per-sample scores: DiDGen on the calibrated S_2.5k twin, seed 0 (issue 23's campaign).
SHIPPED_DIDGEN = "seg-aug__didgen__derm-mini__mini__s0__e4f9b7e6"

def _shipped_didgen(dest: Path) -> tuple[dict, Path]:
    from bench.leaderboard.submit import default_leaderboard_dir

    src = default_leaderboard_dir() / f"{SHIPPED_DIDGEN}.json"
    record = json.loads(src.read_text())
    dest.mkdir(parents=True, exist_ok=True)
    for named in src.parent.glob(f"{SHIPPED_DIDGEN}.*"):  # its scores and sample grid: the content hashes cover them
        if named != src:
            shutil.copy(named, dest / named.name)
    return record, dest / "r.json"


def _as_seed_1_with_better_scores(record: dict) -> None:
    record["seed"], record["run_id"] = 1, record["run_id"].replace("__s0__", "__s1__")
    record["metrics"].update(dice=0.999, iou=0.999)


FORGED = {
    "copied as seed 1, Dice 0.999": (_as_seed_1_with_better_scores, "metrics.dice is 0.999, the mean of its per-model"),
    "headline vs per-model": (lambda r: r["per_model"]["unet"].update(dice=r["per_model"]["unet"]["dice"] - 0.05),
                              "per_model.unet.dice is "),
    "no per-sample file": (lambda r: r.update(per_sample_file=None),
                           "no per-sample file: task seg-aug's metrics must recompute from one"),
    "artefact key with /": (lambda r: r.update(artifacts={"a/../b": r["per_sample_file"]}),
                            "artefact key 'a/../b' is not a plain name (letters, digits, '_' and '-')"),
    "relabelled paper on a real dataset": (
        lambda r: r.update(profile="paper", dataset={**r["dataset"], "id": "isic2018-task1"},
                           run_id=r["run_id"].replace("__derm-mini__mini__", "__isic2018-task1__paper__")),
        "the record says dataset 'isic2018-task1', its task config ran 'derm-mini'"),
    "seed that the run id does not name": (lambda r: r.update(seed=3),
                                           "the run id says seed 's0', the record says 's3'"),
    "gain that does not recompute": (lambda r: r["comparisons"]["relative_gain"].update(iou=0.5),
                                     "comparisons.relative_gain.iou is 0.5, the per-sample scores give -0.0110"),
    "t-test that does not recompute": (lambda r: r["comparisons"]["paired_ttest"]["dice"].update(p=1e-30),
                                       "comparisons.paired_ttest.dice (p = 1e-30) does not recompute from the "
                                       "per-sample scores (p = 0.00784"),
    "nested JSON": (None, "not a record: the JSON is nested too deeply to read"),
}


@pytest.mark.parametrize("case", list(FORGED))
def test_a_refused_submission_prints_its_reason_and_stores_nothing(tmp_path, case):
    edit, reason = FORGED[case]
    record, path = _shipped_didgen(tmp_path / "sub")
    if edit is None:
        path.write_text("[" * 200_000 + "]" * 200_000)
    else:
        edit(record)
        # resealed as a forger would: anyone can recompute the content hashes, each check must catch its edit alone
        path.write_text(json.dumps(with_provenance(record, path.parent)))
    out = bench("submit", str(path), "--leaderboard", str(tmp_path / "lb"))
    assert out.exit_code == 1, out.output
    (line,) = [ln for ln in out.output.splitlines() if ln.startswith("refused ")]
    assert line.startswith(f"refused {path}: {reason}") and "0 accepted, 1 refused" in out.output, out.output
    assert not (tmp_path / "lb").exists() or not list((tmp_path / "lb").iterdir())


@pytest.fixture(scope="module")
def smoke_record(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("runs")
    out = run(work, "--task", "seg-aug", "--method", "classic-aug", "--profile", "smoke", "--quiet", "--set",
              "task.max_epochs=2", "--set", "task.segmenters=[unet]", "--set", "task.n_generate=4")
    assert out.exit_code == 0, out.output
    (path,) = (work / "records").glob("*.json")
    return path


def _relabelled_mini(record: dict) -> None:
    record.update(profile="mini", run_id=record["run_id"].replace("__smoke__", "__mini__"))


def _edited(record: dict) -> None:
    record["per_model"]["unet"]["dice"] = record["metrics"]["dice"] = 0.99  # consistent with itself, not its scores


FORGED_SMOKE = {
    "relabelled mini": (_relabelled_mini, "the record is labelled profile 'mini' but its configs are the 'smoke' "
                                          "profile's (task.dataset_options, task.image_size, "),
    "edited after its run": (_edited, "the record was edited after its run (its content hash differs)"),
    "genuine, without --allow-smoke": (None, "profile 'smoke' is not ranked; the leaderboard takes mini, paper "
                                             "(--allow-smoke accepts smoke records, for testing the pipeline)"),
}


@pytest.mark.parametrize("case", list(FORGED_SMOKE))
def test_a_refused_smoke_submission_prints_its_reason_and_stores_nothing(tmp_path, smoke_record, case):
    edit, reason = FORGED_SMOKE[case]
    record = json.loads(smoke_record.read_text())
    shutil.copy(smoke_record.parent / record["per_sample_file"], tmp_path / record["per_sample_file"])
    path = tmp_path / "r.json"
    if edit:
        edit(record)
    path.write_text(json.dumps(record))
    allow = ["--allow-smoke"] if case == "edited after its run" else []
    out = bench("submit", str(path), "--leaderboard", str(tmp_path / "lb"), *allow)
    (line,) = [ln for ln in out.output.splitlines() if ln.startswith("refused ")]
    assert out.exit_code == 1 and line.startswith(f"refused {path}: {reason}"), out.output
    assert not (tmp_path / "lb").exists() or not list((tmp_path / "lb").iterdir())


# -- the document ---------------------------------------------------------------------------------------------------


def _tests_in(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {n.name for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
            and n.name.startswith("test")}


def test_every_row_of_the_bad_input_table_names_a_test_that_exists():
    doc = (REPO / "docs" / "bad-inputs.md").read_text()
    rows = [ln for ln in doc.splitlines() if re.match(r"^\| \d+ \|", ln)]
    assert len(rows) >= 30 and [int(r.split("|")[1]) for r in rows] == list(range(1, len(rows) + 1))
    for row in rows:
        if row.rstrip(" |").endswith("| pending"):  # a fix still in progress: its row says so, with no output
            continue
        refs = re.findall(r"`(tests/[\w/]+\.py)::(\w+)`", row)
        assert refs, f"row names no test: {row}"
        for file, name in refs:
            assert name in _tests_in(REPO / file), f"{file}::{name} does not exist (row: {row[:80]})"
