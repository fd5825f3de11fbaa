"""Runner: caching, determinism, resume after interruption, compatibility checks."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from bench.runner import BenchError, RunConfig, load_shard, run_one

FAST = ["task.segmenters=[unet]", "task.max_epochs=1", "task.n_generate=12"]


def rc(tmp_path, method="classic-aug", seed=0, sets=(), **kw):
    return RunConfig(task="seg-aug", method=method, profile="smoke", seed=seed, sets=[*FAST, *sets],
                     work_dir=tmp_path, progress=False, threads=1, **kw)


def shard_samples(work_dir: Path):
    gen = next((work_dir / "generate").iterdir())
    return [s for p in sorted(gen.glob("shard-*.json")) for s in load_shard(p.with_suffix(""))]


def test_rerun_skips_finished_stages_and_gives_identical_metrics(tmp_path):
    first, path1 = run_one(rc(tmp_path))
    second, path2 = run_one(rc(tmp_path))
    assert path1 == path2
    assert first["cached"] == {"fit": False, "generate": False, "evaluate": False}
    assert second["cached"] == {"fit": True, "generate": True, "evaluate": True}
    assert first["metrics"] == second["metrics"] and first["per_model"] == second["per_model"]
    assert first["n"]["generated"] == 12
    assert (path1.parent / first["per_sample_file"]).exists()
    assert (path1.parent / first["artifacts"]["samples"]).exists()


def test_fresh_runs_with_the_same_seed_are_identical(tmp_path):
    a, _ = run_one(rc(tmp_path / "a"))
    b, _ = run_one(rc(tmp_path / "b"))
    assert a["metrics"] == b["metrics"] and a["per_model"] == b["per_model"]
    assert a["protocol_hash"] == b["protocol_hash"] and a["run_id"] == b["run_id"]
    sa, sb = shard_samples(tmp_path / "a"), shard_samples(tmp_path / "b")
    assert all(torch.equal(x.image, y.image) and torch.equal(x.mask, y.mask) for x, y in zip(sa, sb))


def test_real_arm_is_shared_across_methods(tmp_path, caplog):
    run_one(rc(tmp_path, method="real-only"))
    with caplog.at_level("INFO", logger="bench"):
        rec, _ = run_one(rc(tmp_path))
    assert "real-only arm of unet: cached" in caplog.text
    real, _ = run_one(rc(tmp_path, method="real-only"))
    assert rec["comparisons"]["reference_metrics"] == real["metrics"]


def test_interrupted_generation_resumes_without_loss_or_duplication(tmp_path, monkeypatch):
    import helpers

    reference, _ = run_one(rc(tmp_path / "ref", method="helpers:NoisePairs", shard_size=4))
    monkeypatch.setenv("BENCH_TEST_FAIL_AFTER", "6")  # dies inside the second shard
    helpers.NoisePairs.made = 0
    with pytest.raises(KeyboardInterrupt):
        run_one(rc(tmp_path / "run", method="helpers:NoisePairs", shard_size=4))
    gen = next((tmp_path / "run" / "generate").iterdir())
    assert sorted(p.name for p in gen.glob("shard-*.json")) == ["shard-00000.json"]
    assert not (tmp_path / "run" / "records").exists()  # no partial record
    monkeypatch.delenv("BENCH_TEST_FAIL_AFTER")
    resumed, _ = run_one(rc(tmp_path / "run", method="helpers:NoisePairs", shard_size=4))
    got, want = shard_samples(tmp_path / "run"), shard_samples(tmp_path / "ref")
    assert len(got) == len(want) == 12
    assert [s.meta["index"] for s in got] == list(range(12))
    assert all(torch.equal(x.image, y.image) for x, y in zip(got, want))
    assert resumed["metrics"] == reference["metrics"]


def test_killed_process_resumes(tmp_path):
    """SIGKILL a real `bench run` during generation, rerun it, and compare with an uninterrupted run."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent), "BENCH_TEST_DELAY": "0.1",
           "BENCH_TEST_PROGRESS_FILE": str(tmp_path / "progress.txt"), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "bench.cli", "run", "--task", "seg-aug", "--method", "helpers:NoisePairs",
           "--profile", "smoke", "--shard-size", "4", "--threads", "1", "--no-progress", "--quiet",
           *[a for s in FAST for a in ("--set", s)]]
    proc = subprocess.Popen([*cmd, "--work-dir", str(tmp_path / "run")], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    progress = tmp_path / "progress.txt"
    while time.time() < deadline and (not progress.exists() or len(progress.read_text().split()) < 6):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert len(progress.read_text().split()) < 12, "the run finished before it could be killed"
    env.pop("BENCH_TEST_DELAY")
    done = subprocess.run([*cmd, "--work-dir", str(tmp_path / "run")], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    run_one(rc(tmp_path / "ref", method="helpers:NoisePairs", shard_size=4))  # uninterrupted, in-process
    got, want = shard_samples(tmp_path / "run"), shard_samples(tmp_path / "ref")
    assert len(got) == len(want) == 12
    assert [s.meta["index"] for s in got] == list(range(12))
    assert all(torch.equal(x.image, y.image) for x, y in zip(got, want))


def test_incompatible_method_fails_before_any_work(tmp_path):
    with pytest.raises(BenchError, match=r"needs a method returning \['image', 'mask'\]; it returns \['image'\]"):
        run_one(rc(tmp_path / "w", method="helpers:ImageOnly"))
    assert not (tmp_path / "w").exists()
    with pytest.raises(BenchError, match=r"requires \['mask', 'reference'\]"):
        run_one(rc(tmp_path / "w", sets=["task.conditioning=none"]))
    assert not (tmp_path / "w").exists()


def test_bad_ids_and_keys(tmp_path):
    with pytest.raises(BenchError, match="Unknown task 'seg-agu'.*Did you mean: seg-aug"):
        run_one(RunConfig(task="seg-agu", method="real-only", work_dir=tmp_path))
    with pytest.raises(BenchError, match="Unknown dataset 'nope'"):
        run_one(RunConfig(task="seg-aug", method="real-only", dataset="nope", work_dir=tmp_path))
    with pytest.raises(BenchError, match="unknown --set key 'epochs'"):
        run_one(rc(tmp_path, sets=["epochs=3"]))
    with pytest.raises(BenchError, match="task.image_size=30 must be divisible"):
        run_one(rc(tmp_path, sets=["task.image_size=30"]))
    with pytest.raises(BenchError, match="derm-mini: unknown option"):
        run_one(rc(tmp_path, sets=["task.dataset_options={colour: 1}"]))
    with pytest.raises(BenchError, match="method.hflip must be a probability"):
        run_one(rc(tmp_path, sets=["method.hflip=2.0"]))
    assert not (tmp_path / "records").exists()


def test_config_file_overrides_profile(tmp_path):
    cfg = tmp_path / "run.yaml"
    cfg.write_text("task: {n_generate: 4}\nmethod: {degrees: 5.0}\n")
    rec, _ = run_one(RunConfig(task="seg-aug", method="classic-aug", profile="smoke", sets=FAST[:2],
                               config_file=cfg, work_dir=tmp_path, progress=False, threads=1))
    assert rec["config"]["task"]["n_generate"] == 4 and rec["config"]["method"]["degrees"] == 5.0
    assert rec["n"]["generated"] == 4
    bad = tmp_path / "bad.yaml"
    bad.write_text("tasks: {}\n")
    with pytest.raises(BenchError, match="unknown top-level key"):
        run_one(RunConfig(task="seg-aug", method="classic-aug", config_file=bad, work_dir=tmp_path))


def test_record_is_complete_and_valid(tmp_path):
    from bench.runner import recompute_protocol_hash
    from bench.store import read_record

    rec, path = run_one(rc(tmp_path))
    back = read_record(path)
    assert back["protocol_hash"] == recompute_protocol_hash(back)
    assert set(back["timings"]) == {"fit", "generate", "evaluate"}
    assert all(v > 0 for v in back["peak_memory_mb"].values())
    assert back["environment"]["packages"]["torch"]
    assert set(back["per_model"]) == {"unet"}
    assert 0 <= back["metrics"]["dice"] <= 1
    assert back["comparisons"]["paired_ttest"]["iou"]["n"] == back["n"]["test"]
    assert json.loads(path.read_text())["dataset"]["splits"].keys() == {"train", "val", "test", "transfer"}
    assert 0 <= back["metrics"]["dice[ph2]"] <= 1 and back["n"]["transfer"] > 0


def test_accelerator_only_under_accelerate_launch(monkeypatch):
    from bench.runner import launched_accelerator

    for key in ("WORLD_SIZE", "ACCELERATE_USE_CPU"):
        monkeypatch.delenv(key, raising=False)
    assert launched_accelerator() is None
    monkeypatch.setenv("ACCELERATE_USE_CPU", "1")
    acc = launched_accelerator()
    assert acc is not None and acc.is_main_process and acc.device.type == "cpu"


def test_recompute_refuses_stated_split_checksums_that_differ(tmp_path):
    from bench.runner import recompute_protocol_hash

    rec, _ = run_one(rc(tmp_path))
    assert recompute_protocol_hash(rec) == rec["protocol_hash"]
    rec["dataset"]["splits"]["test"] = "0" * 64
    with pytest.raises(BenchError, match="split 'test' checksum in the record"):
        recompute_protocol_hash(rec)


def test_generation_only_options_share_the_fit_but_not_the_samples(tmp_path):
    import helpers

    helpers.FitOnceGrey.fits = 0
    first, _ = run_one(rc(tmp_path, method="helpers:FitOnceGrey"))
    second, _ = run_one(rc(tmp_path, method="helpers:FitOnceGrey", sets=["method.brightness=0.5"]))
    assert helpers.FitOnceGrey.fits == 1 and second["cached"] == {"fit": True, "generate": False, "evaluate": False}
    assert first["stages"]["fit"] == second["stages"]["fit"] and first["stages"]["generate"] != second["stages"]["generate"]
    third, _ = run_one(rc(tmp_path, method="helpers:FitOnceGrey", sets=["method.fit_images=2"]))
    assert helpers.FitOnceGrey.fits == 2 and third["cached"]["fit"] is False


def test_fit_from_reuses_another_methods_fit(tmp_path):
    import helpers

    helpers.FitOnceGrey.fits = 0
    donor, _ = run_one(rc(tmp_path, method="helpers:FitOnceGrey"))
    taker, _ = run_one(rc(tmp_path, method="helpers:BrighterGrey"))
    assert helpers.FitOnceGrey.fits == 1 and taker["cached"] == {"fit": True, "generate": False, "evaluate": False}
    assert taker["stages"]["fit"] == donor["stages"]["fit"] and taker["run_id"] != donor["run_id"]
    first = lambda rec: load_shard(tmp_path / rec["stages"]["generate"] / "shard-00000")[0].image  # noqa: E731
    assert torch.allclose(first(taker), (first(donor) + 0.1).clamp(max=1), atol=1 / 255)  # same fitted level, brighter samples
    other, _ = run_one(rc(tmp_path, method="helpers:BrighterGrey", sets=["method.fit_images=2"]))
    assert helpers.FitOnceGrey.fits == 2 and other["cached"]["fit"] is False


def test_generator_inputs_stay_out_of_the_protocol_but_not_the_run(tmp_path, caplog):
    """seg-aug's conditioning / mask_source choose what the generator is given: records differing there share
    a protocol (Table 4.5 ranks them together) and the real-only arm, but not their samples or run ids."""
    real_masks, real_masks_path = run_one(rc(tmp_path, method="helpers:NoisePairs"))
    source = str(tmp_path / real_masks["stages"]["generate"])
    with caplog.at_level("INFO", logger="bench"):
        generated, _ = run_one(rc(tmp_path, method="helpers:NoisePairs",
                                  sets=["task.conditioning=generated-masks", f"task.mask_source={source}"]))
    assert "real-only arm of unet: cached" in caplog.text
    assert generated["protocol_hash"] == real_masks["protocol_hash"]
    assert generated["run_id"] != real_masks["run_id"]
    assert generated["stages"]["generate"] != real_masks["stages"]["generate"]
    assert generated["comparisons"]["reference_metrics"] == real_masks["comparisons"]["reference_metrics"]
    # the record names its mask source without this machine's paths: a folder relative to the work dir, a record
    # file by its run id
    assert generated["config"]["task"]["mask_source"] == real_masks["stages"]["generate"]
    by_record, _ = run_one(rc(tmp_path, method="helpers:NoisePairs",
                              sets=["task.conditioning=generated-masks", f"task.mask_source={real_masks_path}"]))
    assert by_record["config"]["task"]["mask_source"] == real_masks["run_id"]
    assert str(tmp_path) not in json.dumps(by_record["config"])
    longer, _ = run_one(rc(tmp_path, method="helpers:NoisePairs", sets=["task.patience=3"]))
    assert longer["protocol_hash"] != real_masks["protocol_hash"]


def test_scales_share_one_generation(tmp_path):
    """S_1k and S_2.5k differ only in the real pairs the segmenters see: one fit, one generation, two scores."""
    full, _ = run_one(rc(tmp_path, method="helpers:NoisePairs"))
    subset, _ = run_one(rc(tmp_path, method="helpers:NoisePairs", sets=["task.n_real=20"]))
    assert subset["cached"] == {"fit": True, "generate": True, "evaluate": False}
    assert subset["protocol_hash"] != full["protocol_hash"] and subset["n"]["real_train"] == 20
    on_subset, _ = run_one(rc(tmp_path, method="helpers:NoisePairs", sets=["task.n_real=20", "task.fit_on=real-subset"]))
    assert on_subset["cached"]["generate"] is False  # conditions come from the subset then


def test_default_threads_follow_omp_num_threads(monkeypatch):
    from bench.runner import default_threads

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert default_threads() == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "junk")
    assert default_threads() == min(2, os.cpu_count() or 1)
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert default_threads() == min(2, os.cpu_count() or 1)
