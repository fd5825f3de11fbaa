"""`bench run --dry-run` (configs, protocol, stages, estimate; nothing written) and Ctrl-C during `bench run`
(one line, exit 130, no traceback, no half-written file, the rerun resumes from the cached stages)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.cli import interrupted_line
from bench.dry_run import report
from bench.runner import RunConfig, RunInterrupted

SMOKE = ["--task", "seg-aug", "--method", "classic-aug", "--profile", "smoke"]
LONG_EVAL = ["task.max_epochs=400", "task.patience=400"]  # an evaluate stage that is still running when interrupted


def test_ctrl_c_during_evaluate_is_one_line_exit_130_and_the_rerun_resumes(tmp_path) -> None:
    work = tmp_path / "w"
    args = [sys.executable, "-m", "bench", "run", *SMOKE, *(a for s in LONG_EVAL for a in ("--set", s)),
            "--work-dir", str(work), "--no-progress", "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    # a test session started in the background by a non-interactive shell inherits SIGINT ignored, and so would
    # the child (Python keeps an ignored SIGINT ignored): give the child the default disposition, as a terminal has
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 120
    while not list(work.glob("generate/*/done.json")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and out == ""
    assert err.strip().splitlines() == [f"interrupted during evaluate: fit, generate finished and cached in {work} "
                                        "(trained arms and per-epoch checkpoints are kept); rerun the same command "
                                        "to resume"]
    assert not list(work.rglob("*.tmp*")) and not (work / "records").exists()
    # the same command again: fit and generate are cached, evaluate is what is left
    text = report(RunConfig(task="seg-aug", method="classic-aug", profile="smoke", sets=LONG_EVAL, work_dir=work))
    stages = {line.split()[0]: line.split()[1] for line in text.splitlines() if line.startswith("  ")
              and line.split()[0] in ("fit", "generate", "evaluate")}
    assert stages == {"fit": "cached", "generate": "cached", "evaluate": "to"}


def test_interrupted_lines() -> None:
    work = Path("runs")
    assert interrupted_line(KeyboardInterrupt(), work) == ("interrupted before any stage ran: nothing was computed; "
                                                           "rerun the same command to start")
    assert interrupted_line(RunInterrupted("generate", ["fit"]), work) == (
        "interrupted during generate: fit finished and cached in runs (the shards written so far are kept); rerun "
        "the same command to resume")
    assert interrupted_line(RunInterrupted("fit", []), work).startswith("interrupted during fit: no stage finished")
    assert isinstance(RunInterrupted("fit", []), KeyboardInterrupt)  # callers that catch Ctrl-C still do


def test_dry_run_names_the_protocol_stages_and_estimate_and_writes_nothing(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "120")
    work = tmp_path / "w"
    text = report(RunConfig(task="seg-aug", method="real-only", profile="mini", work_dir=work))
    lines = text.splitlines()
    assert lines[1] == ('protocol: seg-aug/mini@v2 "S_1k twin, 4 segmenters, calibrated world" (6c729d3b; the shipped '
                        "records' section)")
    assert "task config:" in lines and "method config:" in lines and "  n_real: 200" in lines
    assert "  segmenters: [unet, attention-unet, dcsau-net, xbound-former]" in lines
    # the shipped real-only records hold this run's stage timings: an estimate, not 'unknown'
    evaluate = next(line for line in lines if line.startswith("  evaluate"))
    assert "to run  ~" in evaluate and "?" not in evaluate
    assert lines[-1].startswith("estimated time: ") and "unknown" not in lines[-1]
    assert not work.exists()
    # --set moving the run off the protocol says so
    off = report(RunConfig(task="seg-aug", method="real-only", profile="mini", sets=["task.n_real=100"],
                           work_dir=work)).splitlines()[1]
    assert off.startswith("protocol: ") and "no named protocol: --config/--set changed the settings of seg-aug/mini@v2" \
        in off and "no shipped record has it" in off
    assert max(map(len, lines)) <= 120


def test_ctrl_c_while_a_sweep_plans_is_one_line_and_exit_130(capsys) -> None:
    import typer

    from bench.cli import _sweep_interruptible

    def planning(file: str) -> None:
        raise KeyboardInterrupt

    wrapped = _sweep_interruptible(planning)
    with pytest.raises(typer.Exit) as stop:
        wrapped("ch4-mini.yaml")
    assert stop.value.exit_code == 130
    assert capsys.readouterr().err == ("interrupted: bench sweep stopped; finished runs and stages are cached in the "
                                       "work dir; rerun the same command to resume\n")
