from dataclasses import dataclass, field
from typing import Literal

import pytest

from bench import config as cfg


@dataclass(frozen=True)
class C:
    lr: float = 1e-3
    steps: int = 10
    name: str = "a"
    flag: bool = False
    mode: Literal["x", "y"] = "x"
    models: tuple[str, ...] = ("u",)
    n: int | None = None
    opts: dict = field(default_factory=dict)


def write(tmp_path, text):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return p


def test_profiles_and_smoke_inherits_mini(tmp_path):
    p = write(tmp_path, "version: 1\nmini: {lr: 0.1, steps: 5}\npaper: {lr: 0.01}\nsmoke: {steps: 1}\n")
    assert cfg.profile_section(p, "mini") == {"lr": 0.1, "steps": 5}
    assert cfg.profile_section(p, "smoke") == {"lr": 0.1, "steps": 1}
    assert cfg.profile_section(p, "paper") == {"lr": 0.01}
    with pytest.raises(cfg.ConfigError, match="unknown profile 'fast'"):
        cfg.profile_section(p, "fast")


def test_malformed_and_unknown_top_level(tmp_path):
    with pytest.raises(cfg.ConfigError, match="malformed YAML"):
        cfg.profile_section(write(tmp_path, "mini: [unclosed\n"), "mini")
    with pytest.raises(cfg.ConfigError, match="unknown top-level key"):
        cfg.profile_section(write(tmp_path, "minni: {}\n"), "mini")


def test_build_checks_keys_and_types():
    c = cfg.build(C, {"lr": 1, "models": ["a", "b"], "n": 3}, "method")
    assert c.lr == 1.0 and isinstance(c.lr, float) and c.models == ("a", "b") and c.n == 3
    with pytest.raises(cfg.ConfigError, match="unknown method config key 'lrr'"):
        cfg.build(C, {"lrr": 1}, "method")
    with pytest.raises(cfg.ConfigError, match="method.steps: expected an integer"):
        cfg.build(C, {"steps": "ten"}, "method")
    with pytest.raises(cfg.ConfigError, match="method.mode: 'z' is not one of"):
        cfg.build(C, {"mode": "z"}, "method")
    with pytest.raises(cfg.ConfigError, match="expected true/false"):
        cfg.build(C, {"flag": "yes please"}, "method")
    assert cfg.to_dict(c)["models"] == ["a", "b"]


def test_parse_set_and_routing():
    pairs = cfg.parse_set(["lr=1e-4", "task.steps=3", "models=[a, b]", "name=hello world"])
    assert pairs == [("lr", 1e-4), ("task.steps", 3), ("models", ["a", "b"]), ("name", "hello world")]

    @dataclass(frozen=True)
    class T:
        steps: int = 1
        lr: float = 0.0

    task, method = cfg.split_overrides([("task.steps", 3), ("name", "z")], T, C)
    assert task == {"steps": 3} and method == {"name": "z"}
    with pytest.raises(cfg.ConfigError, match="ambiguous"):
        cfg.split_overrides([("lr", 1.0)], T, C)
    with pytest.raises(cfg.ConfigError, match="unknown --set key 'bogus'"):
        cfg.split_overrides([("bogus", 1)], T, C)
    with pytest.raises(cfg.ConfigError, match="task has no key 'name'"):
        cfg.split_overrides([("task.name", 1)], T, C)
    with pytest.raises(cfg.ConfigError, match="expected key=value"):
        cfg.parse_set(["novalue"])
