"""A small sweep (smoke, 6 runs, 2 workers, one dependency) on both launchers, killed and resumed, against a
sequential run of the same runs, record for record."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.runner import RunConfig, run_one
from bench.sweep.launch import core_sets, error_line

TESTS = Path(__file__).resolve().parents[1]
SWEEP = Path(__file__).resolve().parent / "smoke-six.yaml"
FAST = ["task.segmenters=[unet]", "task.max_epochs=1", "task.n_generate=12"]
#: What a record must state identically whichever way its run was started.
SAME = ("run_id", "task", "dataset", "method", "profile", "seed", "config", "protocol_hash", "metrics", "per_model",
        "comparisons", "n", "stages")


@pytest.fixture(scope="module")
def sequential(tmp_path_factory):
    """The six runs of smoke-six.yaml one after another through run_one, as a user would type them."""
    work = tmp_path_factory.mktemp("sequential")

    def run(method: str, seed: int = 0, *sets: str) -> dict:
        record, _ = run_one(RunConfig(task="seg-aug", method=method, profile="smoke", seed=seed, sets=[*FAST, *sets],
                                      work_dir=work, threads=1, shard_size=4, progress=False))
        return record

    records = {"real-only": run("real-only"), "noise@s0": run("helpers:NoisePairs"),
               "noise@s1": run("helpers:NoisePairs", 1), "grey": run("helpers:FitOnceGrey"),
               "brighter": run("helpers:BrighterGrey", 0, "method.brightness=1.5")}
    records["grey-on-noise"] = run("helpers:FitOnceGrey", 0, "task.conditioning=generated-masks",
                                   f"task.mask_source={records['noise@s0']['run_id']}")
    return {"records": records, "work": work}


#: The defaults of the small sweep files the tests below write.
SMOKE_DEFAULTS = """defaults: {profile: smoke, threads: 1, shard_size: 4, set: {task.segmenters: [unet], task.max_epochs: 1,
                                                             task.n_generate: 8}}
"""


def write_sweep(folder: Path, name: str, runs: str) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(SMOKE_DEFAULTS + "runs:\n" + runs)
    return path


def sweep_env(**extra: str) -> dict:
    return {**os.environ, "PYTHONPATH": str(TESTS), "COLUMNS": "250", "OMP_NUM_THREADS": "1", **extra}


def bench_sweep(work: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "bench", "sweep", str(SWEEP), "--work-dir", str(work), "--workers", "2", *args]


def assert_same_records(work: Path, sequential: dict) -> None:
    for name, want in sequential["records"].items():
        path = work / "records" / f"{want['run_id']}.json"
        assert path.is_file(), f"{name}: no record {path.name}"
        got = json.loads(path.read_text())
        for key in SAME:
            assert got[key] == want[key], f"{name}: {key} differs"
        assert got.get("overrides") == want.get("overrides"), name  # what the run put over its profile
        if want.get("per_sample_file"):
            assert (work / "records" / want["per_sample_file"]).read_bytes() == \
                (sequential["work"] / "records" / want["per_sample_file"]).read_bytes(), name
    assert len(list((work / "records").glob("*.json"))) == 6


def running_with(marker: str) -> list[int]:
    """Processes whose command line names ``marker`` (a test's work dir)."""
    out = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if marker in (proc / "cmdline").read_bytes().decode(errors="replace"):
                    out.append(int(proc.name))
            except OSError:
                continue
    return out


def test_local_workers_killed_midway_resume_and_match_a_sequential_run(sequential, tmp_path):
    work = tmp_path / "work"
    log = open(tmp_path / "first.out", "w")
    # BENCH_TEST_DELAY slows the generators a little so that the kill lands mid-way (the cache keys ignore it)
    first = subprocess.Popen(bench_sweep(work), env=sweep_env(BENCH_TEST_DELAY="0.2"), stdout=log,
                             stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while not list((work / "records").glob("*.json")):
            assert first.poll() is None, (tmp_path / "first.out").read_text()
            assert time.monotonic() < deadline, "no run finished"
            time.sleep(0.05)
        first.send_signal(signal.SIGKILL)  # the sweep dies at once, its workers with it
        first.wait(timeout=30)
    finally:
        if first.poll() is None:
            first.kill()
        log.close()
    printed = (tmp_path / "first.out").read_text()
    assert "running   real-only" in printed and "running   noise@s0" in printed  # two workers at once
    deadline = time.monotonic() + 30
    while running_with(str(work)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not running_with(str(work)), "a worker outlived the killed sweep"
    finished = len(list((work / "records").glob("*.json")))
    assert 1 <= finished < 6

    plan = subprocess.run(bench_sweep(work, "--dry-run"), env=sweep_env(), capture_output=True, text=True, timeout=300)
    assert plan.returncode == 0 and f"finished: {finished} of 6 runs" in plan.stdout, plan.stdout + plan.stderr
    assert "record" in plan.stdout and "finished" in plan.stdout

    second = subprocess.run(bench_sweep(work), env=sweep_env(), capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stdout + second.stderr
    lines = second.stdout.splitlines()
    assert sum("  cached    " in line and "record exists" in line for line in lines) == finished
    assert sum("  done      " in line for line in lines) == 6 - finished
    assert f"{6 - finished} done, {finished} cached, 0 failed, 0 skipped" in second.stdout
    assert f"bench table thesis-4.5 --profile smoke --records {work / 'records'}" in second.stdout
    assert_same_records(work, sequential)
    status = json.loads((work / "sweeps" / "smoke-six" / "status.json").read_text())
    assert status["exit_code"] == 0 and {r["state"] for r in status["runs"]} <= {"done", "cached"}
    assert (work / "sweeps" / "smoke-six" / "logs" / "grey-on-noise.log").is_file() or finished == 6
    assert not list(work.rglob("*.tmp")) and not list(work.rglob("*.tmp.*"))


def test_submitit_local_executor_runs_the_sweep_and_matches_a_sequential_run(sequential, tmp_path):
    work = tmp_path / "work"
    done = subprocess.run(bench_sweep(work, "--launcher", "submitit", "--cluster", "local", "--time", "20"),
                          env=sweep_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "submitit (local), 2 job(s) at a time" in done.stdout
    assert "6 done, 0 cached, 0 failed, 0 skipped of 6 runs" in done.stdout
    # grey-on-noise started only after noise@s0 was done
    order = [line.split()[1:3] for line in done.stdout.splitlines() if line[:2].isdigit()]
    assert order.index(["done", "noise@s0"]) < order.index(["running", "grey-on-noise"])
    assert_same_records(work, sequential)
    assert list((work / "sweeps" / "smoke-six" / "submitit").glob("*_log.out"))  # submitit's own job logs


def test_a_failed_run_is_listed_its_dependents_skipped_and_the_others_run(tmp_path):
    sweep = write_sweep(tmp_path, "fails", """  - {name: nan, task: seg-aug, method: "helpers:NaNPairs"}
  - {name: on-nan, task: seg-aug, method: "helpers:FitOnceGrey",
     set: {task.conditioning: generated-masks, task.mask_source: "{run:nan}"}}
  - {name: later, task: seg-aug, method: "helpers:FitOnceGrey", after: [on-nan]}
  - {name: ok, task: seg-aug, method: real-only}
""")
    work = tmp_path / "work"
    done = subprocess.run([sys.executable, "-m", "bench", "sweep", str(sweep), "--work-dir", str(work), "--workers",
                           "2"], env=sweep_env(), capture_output=True, text=True, timeout=600)
    out = done.stdout
    assert done.returncode == 1, out + done.stderr
    assert "1 done, 0 cached, 1 failed, 2 skipped of 4 runs" in out
    failures = out[out.index("1 run(s) failed:"):].splitlines()
    assert failures[1] == ("  nan (seg-aug helpers:NaNPairs s0): error: method 'helpers:NaNPairs' returned a sample "
                           "whose image holds NaN or infinite values (nothing of this shard was written)")
    assert failures[2] == f"    log: {work / 'sweeps' / 'fails' / 'logs' / 'nan.log'}"
    assert "  on-nan (seg-aug helpers:FitOnceGrey s0): dependency 'nan' failed" in failures
    assert "  later (seg-aug helpers:FitOnceGrey s0): dependency 'on-nan' skipped" in failures
    assert len(list((work / "records").glob("*.json"))) == 1  # ok ran; nothing of the failed run was recorded


def test_error_line_and_core_split(tmp_path):
    log = tmp_path / "x.log"
    log.write_text("INFO [fit] ...\nerror: task.n_real=9000 exceeds the 200 training pairs of 'derm-mini'\n")
    assert error_line(log, 2) == "error: task.n_real=9000 exceeds the 200 training pairs of 'derm-mini'"
    log.write_text("Traceback (most recent call last):\n  File \"x\", line 1\nRuntimeError: boom\n")
    assert error_line(log, 1) == "error: RuntimeError: boom"
    log.write_text("INFO [generate] 3/12\n")
    assert error_line(log, -9) == "error: killed by SIGKILL"
    assert core_sets(2, 1, [0, 1]) == [[0], [1]]
    assert core_sets(2, 2, [0, 1, 2, 3]) == [[0, 1], [2, 3]]
    assert core_sets(3, 1, [0, 1]) == [[0], [1], [0]]  # more workers than cores: they share


def test_skip_shipped_runs_only_the_runs_without_a_shipped_record(tmp_path, monkeypatch):
    """A campaign resumed on a machine without its work dir: --skip-shipped leaves the runs whose record is in
    results/leaderboard/ (here: monkeypatched) and runs the others, dependents of a shipped run included."""
    from typer.testing import CliRunner

    import bench.sweep.plan as plan
    from bench.cli import app
    from bench.sweep.spec import load_sweep

    sweep = write_sweep(tmp_path, "two", """  - {name: first, task: seg-aug, method: "helpers:NoisePairs"}
  - {name: second, task: seg-aug, method: real-only, after: [first]}
""")
    work = tmp_path / "work"
    monkeypatch.syspath_prepend(str(TESTS))
    monkeypatch.setenv("PYTHONPATH", str(TESTS))
    runs = {r.name: r for r in plan.plan_sweep(load_sweep(sweep), work)}
    first_id = runs["first"].plan.run_id
    made_as_planned = {first_id: {s: f"{s}/{st.key}" for s, st in runs["first"].plan.stages.items()}}
    # a shipped record made by other code (another fit key) is stale: it runs again
    stale = {first_id: {**made_as_planned[first_id], "fit": "fit/0000000000000000"}}
    monkeypatch.setattr(plan, "shipped_stages", lambda: stale)
    dry = CliRunner().invoke(app, ["sweep", str(sweep), "--work-dir", str(work), "--dry-run", "--skip-shipped"],
                             env={"COLUMNS": "250"})
    assert "shipped, stale (fit)" in dry.output and "(1 stale: made with other code or weights" in dry.output
    assert "--skip-shipped: 0 will not run" not in dry.output and "stages to compute: 2 fit" in dry.output

    monkeypatch.setattr(plan, "shipped_stages", lambda: made_as_planned)
    dry = CliRunner().invoke(app, ["sweep", str(sweep), "--work-dir", str(work), "--dry-run", "--skip-shipped"],
                             env={"COLUMNS": "250"})
    assert dry.exit_code == 0, dry.output
    assert "--skip-shipped: 1 will not run" in dry.output and "shipped: skipped" in dry.output
    assert "stages to compute: 1 fit, 1 generate, 1 evaluate" in dry.output

    done = CliRunner().invoke(app, ["sweep", str(sweep), "--work-dir", str(work), "--skip-shipped"],
                              env={"COLUMNS": "250", "OMP_NUM_THREADS": "1"})
    assert done.exit_code == 0, done.output
    assert "record shipped in results/leaderboard/" in done.output and "1 done, 1 cached, 0 failed" in done.output
    assert "2 runs (0 finished before, 1 shipped and skipped)" in done.output
    records = sorted(p.stem for p in (work / "records").glob("*.json"))
    assert len(records) == 1 and records[0].startswith("seg-aug__real-only__") and first_id not in records


def test_skip_shipped_runs_again_a_record_made_from_a_dirty_tree(tmp_path, monkeypatch):
    """A shipped record with the planned stage keys but made from a working tree with uncommitted changes is not
    skipped: nobody can say which code made it (issue 18: the shipped records must come from clean commits)."""
    import json

    from typer.testing import CliRunner

    import bench.paths
    import bench.sweep.plan as plan
    from bench.cli import app
    from bench.sweep.spec import load_sweep

    sweep = write_sweep(tmp_path, "one", """  - {name: first, task: seg-aug, method: "helpers:NoisePairs"}
""")
    work, shipped_dir = tmp_path / "work", tmp_path / "leaderboard"
    shipped_dir.mkdir()
    monkeypatch.syspath_prepend(str(TESTS))
    monkeypatch.setenv("PYTHONPATH", str(TESTS))
    monkeypatch.setattr(bench.paths, "leaderboard_dirs", lambda: [shipped_dir])
    first = plan.plan_sweep(load_sweep(sweep), work)[0].plan
    stages = {s: f"{s}/{st.key}" for s, st in first.stages.items()}

    def dry_run_with(commit: str) -> str:
        (shipped_dir / f"{first.run_id}.json").write_text(json.dumps(
            {"run_id": first.run_id, "stages": stages, "environment": {"git_commit": commit}}))
        out = CliRunner().invoke(app, ["sweep", str(sweep), "--work-dir", str(work), "--dry-run", "--skip-shipped"],
                                 env={"COLUMNS": "250"})
        assert out.exit_code == 0, out.output
        return out.output

    clean = dry_run_with("0123456789abcdef0123456789abcdef01234567")
    assert "shipped: skipped" in clean and "--skip-shipped: 1 will not run" in clean
    dirty = dry_run_with("0123456789abcdef0123456789abcdef01234567-dirty")
    assert "shipped, stale (made from a dirty tree at 0123456)" in dirty
    assert "will not run" not in dirty and "stages to compute: 1 fit, 1 generate, 1 evaluate" in dirty


def test_skip_shipped_keeps_a_shipped_run_whose_outputs_a_run_to_do_reads(tmp_path, monkeypatch):
    """on-first reads first's generated masks (task.mask_source={run:first}) from the work dir: first is shipped,
    but on-first has to run, so first runs too."""
    from typer.testing import CliRunner

    import bench.sweep.plan as plan
    from bench.cli import app
    from bench.sweep.spec import load_sweep

    sweep = write_sweep(tmp_path, "chain", """  - {name: first, task: seg-aug, method: "helpers:NoisePairs"}
  - {name: on-first, task: seg-aug, method: "helpers:FitOnceGrey",
     set: {task.conditioning: generated-masks, task.mask_source: "{run:first}"}}
""")
    work = tmp_path / "work"
    monkeypatch.syspath_prepend(str(TESTS))
    monkeypatch.setenv("PYTHONPATH", str(TESTS))
    runs = {r.name: r for r in plan.plan_sweep(load_sweep(sweep), work)}
    first = runs["first"].plan
    monkeypatch.setattr(plan, "shipped_stages", lambda: {first.run_id: {s: f"{s}/{st.key}" for s, st in first.stages.items()}})
    done = CliRunner().invoke(app, ["sweep", str(sweep), "--work-dir", str(work), "--skip-shipped"],
                              env={"COLUMNS": "250", "OMP_NUM_THREADS": "1"})
    assert done.exit_code == 0, done.output
    assert "2 done, 0 cached, 0 failed" in done.output and "0 finished before)" in done.output
    assert len(list((work / "records").glob("*.json"))) == 2
