"""Runner reliability: stage locks between concurrent runs, a killed run's leftovers, the modes of written files."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from bench.runner import LOCK_FILE, RunConfig, load_shard, run_one, stage_lock
from bench.store import atomic_write_text
from methods.didgen.caption import write_caption_file

TESTS = Path(__file__).resolve().parent
FAST = ["task.segmenters=[unet]", "task.max_epochs=1", "task.n_generate=12"]


def bench_run(work_dir: Path, method: str) -> list[str]:
    return [sys.executable, "-m", "bench", "run", "--task", "seg-aug", "--method", method, "--profile", "smoke",
            "--shard-size", "4", "--threads", "1", "--no-progress", *[a for s in FAST for a in ("--set", s)],
            "--work-dir", str(work_dir)]


def bench_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    # COLUMNS: rich wraps log lines at the console width, which would split the phrases checked below
    return {**os.environ, "PYTHONPATH": str(TESTS), "OMP_NUM_THREADS": "1", "COLUMNS": "1000",
            "BENCH_TEST_FIT_LOG": str(tmp_path / "fits.txt"), **extra}


def wait_until(condition, what: str, *procs: subprocess.Popen) -> None:
    """Poll ``condition``; fail when a process ends first or after a generous safety deadline."""
    deadline = time.monotonic() + 300
    while not condition():
        for proc in procs:
            if proc.poll() is not None:
                raise AssertionError(f"process ended (status {proc.returncode}) before {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.05)


def lines(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def stages_line(stdout: str) -> str:
    return next(line for line in stdout.splitlines() if line.startswith("stages:"))


def shard_samples(work_dir: Path):
    gen = next((work_dir / "generate").iterdir())
    return [s for p in sorted(gen.glob("shard-*.json")) for s in load_shard(p.with_suffix(""))]


def test_concurrent_identical_runs_fit_once_and_the_second_waits(tmp_path):
    gate = tmp_path / "gate"
    env = bench_env(tmp_path, BENCH_TEST_FIT_GATE=str(gate))
    cmd = bench_run(tmp_path / "run", "helpers:GatedFit")
    logs = {name: (open(tmp_path / f"{name}.out", "w"), open(tmp_path / f"{name}.err", "w")) for name in "ab"}
    first = subprocess.Popen(cmd, env=env, stdout=logs["a"][0], stderr=logs["a"][1])
    second = None
    try:
        wait_until(lambda: len(lines(tmp_path / "fits.txt")) == 1, "the first run to enter its fit", first)
        second = subprocess.Popen(cmd, env=env, stdout=logs["b"][0], stderr=logs["b"][1])
        wait_until(lambda: "another process is running this stage" in (tmp_path / "b.err").read_text()
                   or len(lines(tmp_path / "fits.txt")) > 1, "the second run to wait for the fit", second)
        assert lines(tmp_path / "fits.txt") == [str(first.pid)], "the second run fitted too"
        gate.touch()
        assert first.wait(timeout=300) == 0 and second.wait(timeout=300) == 0, (tmp_path / "b.err").read_text()
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.kill()
        for out, err in logs.values():
            out.close()
            err.close()
    assert lines(tmp_path / "fits.txt") == [str(first.pid)]  # one fit, by the first run
    a, b = stages_line((tmp_path / "a.out").read_text()), stages_line((tmp_path / "b.out").read_text())
    assert "fit cached" not in a and "fit cached" in b
    for stage in ("generate", "evaluate"):  # whichever run got there first did it, the other read it
        assert (f"{stage} cached" in a) != (f"{stage} cached" in b), (a, b)
    assert [s.meta["index"] for s in shard_samples(tmp_path / "run")] == list(range(12))
    tables = [[line for line in (tmp_path / f"{name}.out").read_text().splitlines() if not line.startswith("stages:")]
              for name in "ab"]
    assert tables[0] == tables[1] and any("dice" in line for line in tables[0])  # the same metrics and record path


def test_a_run_killed_inside_its_fit_leaves_a_lock_file_that_does_not_block(tmp_path):
    gate = tmp_path / "gate"
    env = bench_env(tmp_path, BENCH_TEST_FIT_GATE=str(gate))
    cmd = bench_run(tmp_path / "run", "helpers:GatedFit")
    killed = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: len(lines(tmp_path / "fits.txt")) == 1, "the run to enter its fit", killed)
    finally:
        killed.send_signal(signal.SIGKILL)
        killed.wait()
    fit_dir = next((tmp_path / "run" / "fit").iterdir())
    assert (fit_dir / LOCK_FILE).exists() and not (fit_dir / "done.json").exists()
    gate.touch()
    rerun = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert "another process is running" not in rerun.stderr
    assert len(lines(tmp_path / "fits.txt")) == 2 and "fit cached" not in stages_line(rerun.stdout)


def test_killed_run_leaves_no_temporaries_and_its_lock_does_not_block(tmp_path):
    """SIGKILL a run inside its generate stage (it holds that stage's lock), add the temporaries a kill inside a
    write leaves (a kill cannot be aimed inside a write), resume: the lock is taken over, the temporaries removed,
    and the samples are those of an uninterrupted run."""
    progress = tmp_path / "progress.txt"
    env = bench_env(tmp_path, BENCH_TEST_DELAY="0.1", BENCH_TEST_PROGRESS_FILE=str(progress))
    cmd = bench_run(tmp_path / "run", "helpers:NoisePairs")
    killed = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: len(lines(progress)) >= 6, "generation to pass its first shard", killed)
    finally:
        killed.send_signal(signal.SIGKILL)
        killed.wait()
    assert len(lines(progress)) < 12, "the run finished before it could be killed"
    gen = next((tmp_path / "run" / "generate").iterdir())
    assert (gen / LOCK_FILE).exists() and not (gen / "done.json").exists()
    (gen / "shard-00002.tmp.safetensors").write_bytes(b"half a shard")  # save_shard's temporary
    (gen / ".shard-00002.json.x1y2z3.tmp").write_text("[{")  # atomic_write_text's temporary

    env.pop("BENCH_TEST_DELAY")
    resumed = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert "another process is running" not in resumed.stderr
    assert "temporary file(s) a killed run left" in resumed.stderr
    assert [p for p in (tmp_path / "run").rglob("*") if ".tmp" in p.name] == []

    run_one(RunConfig(task="seg-aug", method="helpers:NoisePairs", profile="smoke", sets=FAST, shard_size=4,
                      work_dir=tmp_path / "ref", progress=False, threads=1))  # uninterrupted, in-process
    got, want = shard_samples(tmp_path / "run"), shard_samples(tmp_path / "ref")
    assert [s.meta["index"] for s in got] == [s.meta["index"] for s in want] == list(range(12))
    assert all(torch.equal(x.image, y.image) and torch.equal(x.mask, y.mask) for x, y in zip(got, want))


def test_a_finished_stage_is_read_without_taking_its_lock(tmp_path):
    stage = tmp_path / "fit" / "abc"
    atomic_write_text(stage / "done.json", json.dumps({"key": "abc"}))
    with stage_lock(stage, "fit"):
        pass
    assert not (stage / LOCK_FILE).exists()  # a read-only cache stays readable
    with stage_lock(tmp_path / "fit" / "new", "fit"):
        assert (tmp_path / "fit" / "new" / LOCK_FILE).exists()


def test_records_scores_and_shards_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        record, path = run_one(RunConfig(task="seg-aug", method="helpers:GatedFit", profile="smoke", sets=FAST,
                                         shard_size=4, work_dir=tmp_path, progress=False, threads=1))
        write_caption_file(tmp_path / "captions.csv", [("ISIC_0000000", "A pink lesion.")])
        os.umask(0o027)
        atomic_write_text(tmp_path / "other.txt", "x")
    finally:
        os.umask(old)
    gen = tmp_path / record["stages"]["generate"]
    for written in (path, path.parent / record["per_sample_file"], gen / "shard-00000.safetensors",
                    gen / "shard-00000.json", gen / "done.json", tmp_path / "captions.csv",
                    tmp_path / record["stages"]["fit"] / "state" / "weights.safetensors"):  # safetensors makes 0600
        assert oct(written.stat().st_mode & 0o777) == oct(0o644), written
    assert oct((tmp_path / "other.txt").stat().st_mode & 0o777) == oct(0o640)


def test_a_file_system_without_locks_runs_the_stage_unlocked(tmp_path, monkeypatch, caplog):
    import errno
    import fcntl

    def no_locks(fd, operation):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    stage = tmp_path / "generate" / "abc"
    stage.mkdir(parents=True)
    (stage / "shard-00001.tmp.safetensors").write_bytes(b"maybe a concurrent run's")
    with caplog.at_level("WARNING", logger="bench.runner"), stage_lock(stage, "generate"):
        ran = True
    assert ran and "does not support file locks (No locks available)" in caplog.text
    assert (stage / "shard-00001.tmp.safetensors").exists()  # without the lock, nobody's temporaries are stale
