"""Progress without a TTY: log lines with elapsed time and ETA instead of silence."""
import logging

from bench.runner import progress_factory, progress_logger


def test_without_bars_progress_logs_lines_with_an_eta(caplog):
    caplog.set_level(logging.INFO, logger="bench.runner")
    advance = progress_logger("fit unet", 4, every_s=0.0)
    for _ in range(4):
        advance()
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0].startswith("[fit unet] 1/4, ") and "ETA" in lines[0]
    assert lines[-1].startswith("[fit unet] 4/4, ") and "ETA" not in lines[-1]


def test_lines_are_throttled_but_the_last_is_always_logged(caplog):
    caplog.set_level(logging.INFO, logger="bench.runner")
    advance = progress_logger("generate", 100, every_s=3600.0)
    for _ in range(100):
        advance()
    assert [r.getMessage().split(",")[0] for r in caplog.records] == ["[generate] 100/100"]


def test_disabled_bars_fall_back_to_the_logger(caplog):
    caplog.set_level(logging.INFO, logger="bench.runner")
    with progress_factory(False) as progress:
        advance = progress("evaluate", 1)
        advance()
    assert any(r.getMessage().startswith("[evaluate] 1/1") for r in caplog.records)
