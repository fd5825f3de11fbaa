import pytest
import torch

from bench.interface import Capabilities, Condition, GeneratorBase, RunContext, Sample, check_generator_class, derive_seed


def test_sample_fields_lists_present_fields_only():
    s = Sample(image=torch.zeros(3, 4, 4), mask=torch.zeros(4, 4, dtype=torch.bool), prompt="x")
    assert s.fields() == {"image", "mask", "prompt"}
    assert Sample().fields() == frozenset()


def test_condition_fields_include_reference():
    c = Condition(mask=torch.zeros(2, 2, dtype=torch.bool), reference=torch.zeros(3, 2, 2))
    assert c.fields() == {"mask", "reference"}


def test_capabilities_reject_unknown_fields_and_requires_outside_accepts():
    with pytest.raises(ValueError, match="unknown fields"):
        Capabilities(accepts={"colour"})
    with pytest.raises(ValueError, match="not in accepts"):
        Capabilities(accepts={"mask"}, requires={"label"})
    caps = Capabilities(accepts=["mask"], returns=["image"])
    assert isinstance(caps.accepts, frozenset)
    assert caps.to_dict() == {"accepts": ["mask"], "returns": ["image"], "requires": []}


def test_derive_seed_is_deterministic_and_salt_sensitive():
    assert derive_seed(0, 1) == derive_seed(0, 1)
    assert derive_seed(0, 1) != derive_seed(0, 2) != derive_seed(1, 1)
    assert 0 <= derive_seed(123, 4, 5) < 2 ** 63


def test_context_generators_are_independent_of_global_state():
    ctx = RunContext(seed=3)
    a = torch.rand(3, generator=ctx.torch_generator(1))
    torch.manual_seed(999)
    b = torch.rand(3, generator=ctx.torch_generator(1))
    assert torch.equal(a, b)
    assert ctx.dtype == torch.float32 and ctx.is_main_process


def test_check_generator_class():
    class Good(GeneratorBase):
        capabilities = Capabilities(returns={"image"})

    check_generator_class(Good)

    class NoCaps:
        pass

    with pytest.raises(TypeError, match="missing capabilities"):
        check_generator_class(NoCaps)
