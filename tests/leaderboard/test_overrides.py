"""The `overrides` a record states give back its configs: profile defaults + overrides = what `resolve` built."""
from __future__ import annotations

import json

import pytest

from bench import config as cfg
from bench.leaderboard.checks import _resolved
from bench.runner import RunConfig, resolve


@pytest.mark.parametrize("profile, dataset, sets, file_text", [
    ("mini", None, (), None),
    ("smoke", None, ("task.max_epochs=3", "method.degrees=5"), None),
    ("mini", None, ("task.n_real=200",), "task:\n  segmenters: [unet, dcsau-net]\n  dataset_options: {sizes: {train: 64}}\n"),
    ("mini", "isic2018-task1", (), None),  # --dataset drops the profile's options of derm-mini
    ("mini", "isic2018-task1", ("task.image_size=32",), "task:\n  dataset_options: {size_limit: 10}\n"),
])
def test_defaults_plus_recorded_overrides_are_the_resolved_configs(tmp_path, profile, dataset, sets, file_text):
    config_file = None
    if file_text:
        config_file = tmp_path / "campaign.yaml"
        config_file.write_text(file_text)
    resolved = resolve(RunConfig(task="seg-aug", method="classic-aug", profile=profile, dataset=dataset, sets=sets,
                                 config_file=config_file))
    overrides = cfg.recorded_overrides(resolved.task_cls, resolved.method_cls, profile, config_file, sets, dataset)
    rebuilt = _resolved(resolved.task_cls, resolved.method_cls, profile, overrides["task"], overrides["method"])
    actual = json.loads(json.dumps({"task": cfg.to_dict(resolved.task_config), "method": cfg.to_dict(resolved.method_config)}))
    assert rebuilt == actual
    json.dumps(overrides)  # a record holds them
