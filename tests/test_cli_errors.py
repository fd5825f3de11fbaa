"""Bad `bench run` arguments and unwritable work dirs: one `error:` line, exit 2, no record (issue 17)."""
import errno
import os
import tempfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bench.cli import app

FAST = ["--set", "task.segmenters=[unet]", "--set", "task.max_epochs=1", "--set", "task.n_generate=8"]


def _run(work_dir: Path, *args: str):
    return CliRunner().invoke(app, ["run", "--task", "seg-aug", "--method", "classic-aug", "--profile", "smoke",
                                    "--work-dir", str(work_dir), "--threads", "1", "--no-progress", "--quiet",
                                    *FAST, *args])


def _error_line(result) -> str:
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert result.exit_code == 2 and len(lines) == 1, result.output
    assert lines[0].startswith("error: ")
    return lines[0]


def _no_record(work_dir: Path) -> None:
    assert not list(work_dir.glob("**/records/*.json"))


@pytest.mark.parametrize("args, says", [
    (["--seed", str(2 ** 64)], "--seed"),
    (["--seed", "-1"], "--seed -1"),  # refused (bench.runner): numpy takes no negative seed, "s-1" names no seed
    (["--threads", "-2"], "--threads"),
    (["--threads", "0"], "--threads"),
])
def test_bad_numbers(tmp_path, args, says):
    assert says in _error_line(_run(tmp_path / "w", *args))
    _no_record(tmp_path)


def test_config_naming_a_folder(tmp_path):
    assert "not a file" in _error_line(_run(tmp_path / "w", "--config", str(tmp_path)))
    _no_record(tmp_path)


@pytest.mark.parametrize("under", ["", "sub"])
def test_work_dir_naming_a_file_or_under_one(tmp_path, under):
    file = tmp_path / "file"
    file.write_text("x")
    assert "is a file, not a folder" in _error_line(_run(file / under if under else file))


def test_read_only_work_dir(tmp_path, monkeypatch):
    # As root chmod does not stop writes: the first folder the run creates fails as on a read-only mount.
    real_mkdir = Path.mkdir

    def read_only(self, *args, **kwargs):
        if str(self).startswith(str(tmp_path / "w")):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", read_only)
    assert "Read-only file system" in _error_line(_run(tmp_path / "w"))
    monkeypatch.undo()
    _no_record(tmp_path)


def test_full_disk_when_writing_the_record(tmp_path):
    real_mkstemp = tempfile.mkstemp

    def full(*args, dir=None, **kwargs):
        if dir is not None and Path(dir).name == "records":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_mkstemp(*args, dir=dir, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(tempfile, "mkstemp", full)
        assert "No space left on device" in _error_line(_run(tmp_path / "w"))
    _no_record(tmp_path)



def test_seed_threads_and_config_folder_through_the_python_api(tmp_path):
    """`resolve` (run_one, plan_run, bench sweep) refuses them too, with the same one line, before any work."""
    from bench.runner import BenchError, RunConfig, resolve

    def refused(**kw) -> str:
        with pytest.raises(BenchError) as info:
            resolve(RunConfig(task="seg-aug", method="real-only", profile="smoke", work_dir=tmp_path, **kw))
        return str(info.value)

    assert refused(seed=-1).startswith("--seed -1: a seed is an integer from 0 to 2**63 - 1")
    assert refused(seed=2 ** 63).startswith(f"--seed {2 ** 63}:")
    assert refused(threads=0).startswith("--threads 0: must be at least 1")
    assert refused(config_file=tmp_path) == f"config file {tmp_path} is a folder; name a YAML file"
    assert resolve(RunConfig(task="seg-aug", method="real-only", profile="smoke", seed=2 ** 63 - 1)).task_config


def test_full_disk_when_a_method_saves_its_fit_through_safetensors(tmp_path, monkeypatch):
    """safetensors' save_file reports a full disk as SafetensorError, not OSError; the message is the one it gave on
    a full 64 kB tmpfs. The fit stage never finishes, so no record is written."""
    import safetensors.torch
    from safetensors import SafetensorError

    def full(*args, **kwargs):
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    monkeypatch.setattr(safetensors.torch, "save_file", full)
    line = _error_line(_run(tmp_path / "w", "--method", "helpers:GatedFit"))
    assert line == f"error: cannot write in --work-dir {tmp_path / 'w'}: No space left on device"
    _no_record(tmp_path)
    assert not list((tmp_path / "w").glob("fit/*/done.json"))
