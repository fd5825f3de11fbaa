import pytest

from bench.registry import DATASETS, METHODS, TASKS, Registry, UnknownEntryError, import_target


def test_builtins_resolve_lazily():
    assert "seg-aug" in TASKS.names()
    assert {"real-only", "classic-aug"} <= set(METHODS.names())
    assert "derm-mini" in DATASETS.names()
    assert METHODS.get("classic-aug").__name__ == "ClassicAug"


def test_unknown_id_suggests_and_lists():
    with pytest.raises(UnknownEntryError) as info:
        METHODS.get("clasic-aug")
    msg = str(info.value)
    assert "Unknown method 'clasic-aug'" in msg and "Did you mean: classic-aug" in msg and "attencraft" in msg


def test_duplicate_registration_with_other_target_is_an_error():
    reg = Registry("thing")
    reg.register("a", "x.y:Z")
    reg.register("a", "x.y:Z")  # same target: fine
    with pytest.raises(ValueError, match="already registered"):
        reg.register("a", "x.y:W")


def test_decorator_form_and_validation():
    calls = []
    reg = Registry("thing", validate=lambda obj: calls.append(obj))

    @reg.register("f")
    def f():
        return 1

    assert reg.get("f") is f and calls == [f]


def test_module_path_for_unregistered_class():
    cls = METHODS.get("helpers:NoisePairs")
    assert cls.__name__ == "NoisePairs"
    with pytest.raises(TypeError, match="not a Generator"):
        METHODS.get("helpers:NotAGenerator")
    with pytest.raises(ImportError, match="cannot import module"):
        METHODS.get("no_such_pkg.mod:Cls")


def test_entry_points_are_discovered(monkeypatch):
    from importlib.metadata import EntryPoint

    eps = [EntryPoint(name="noise", value="helpers:NoisePairs", group="bench.methods")]
    monkeypatch.setattr("bench.registry.entry_points", lambda group: eps if group == "bench.methods" else [])
    reg = Registry("method", entry_point_group="bench.methods")
    assert reg.names() == ["noise"]
    assert reg.get("noise").__name__ == "NoisePairs"


def test_import_target_errors():
    with pytest.raises(ValueError, match="package.module:Name"):
        import_target("no_colon")
    with pytest.raises(ImportError, match="has no attribute"):
        import_target("bench.registry:Nope")
