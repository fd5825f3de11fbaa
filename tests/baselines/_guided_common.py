"""Shared checks of the ZestGuide / Attn-Refocus baselines (both DiDGen-fit, mask-guided samplers)."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from bench import config as cfg
from bench.interface import Condition, RunContext

WORDS = ["an", "image", "of", "lesion", "on", "skin", "a"]


def fit_relevant(method_cls: type, profile: str) -> dict:
    """The resolved config of ``method_cls`` in ``profile`` without its ``generation_only`` options."""
    from bench.runner import method_config_file

    values = cfg.profile_section(method_config_file(method_cls), profile)
    resolved = cfg.to_dict(cfg.build(method_cls.Config, values, "method"))
    return {k: v for k, v in resolved.items() if k not in method_cls.generation_only}


def check_fit_options_equal_didgen(method_cls: type) -> None:
    from methods.didgen import DiDGen

    for profile in ("smoke", "mini", "paper"):
        assert fit_relevant(method_cls, profile) == fit_relevant(DiDGen, profile), profile
    new = {f.name for f in dataclasses.fields(method_cls.Config)} - {f.name for f in dataclasses.fields(DiDGen.Config)}
    assert new <= method_cls.generation_only, new - method_cls.generation_only


def check_deterministic_and_batch_independent(model, masks) -> None:
    conds = [Condition(mask=m, meta={"index": i}) for i, m in enumerate(masks)]
    first = list(model.generate(conds, RunContext(seed=4)))
    again = list(model.generate(conds, RunContext(seed=4)))
    alone = next(model.generate(conds[1:2], RunContext(seed=4)))
    for a, b in zip(first, again):
        assert torch.equal(a.image, b.image)
    torch.testing.assert_close(alone.image, first[1].image, atol=1e-5, rtol=0)
    for s, m in zip(first, masks):
        side = s.image.shape[-1]
        assert s.mask.dtype == torch.bool and s.mask.shape == (side, side)
        from bench.tasks.common import resize_mask

        assert torch.equal(s.mask, resize_mask(m, side))  # the conditioning mask, not a read-out
    with pytest.raises(ValueError, match="needs a mask in every condition"):
        list(model.generate([Condition(meta={"index": 0})], RunContext()))


def smoke_run_after_didgen(method_id: str, tmp_path) -> dict:
    """A smoke seg-aug run of didgen, then of ``method_id``: the second reuses the first's fit."""
    from bench.runner import RunConfig, run_one

    common = dict(task="seg-aug", profile="smoke", seed=0, work_dir=tmp_path, threads=1, progress=False,
                  sets=("task.n_generate=4", "task.max_epochs=1", "task.lpips_pairs=4", "method.sample_steps=2"))
    run_one(RunConfig(method="didgen", **common))
    record, path = run_one(RunConfig(method=method_id, **common))
    return record


def loss_before_after(model, store, loss_at, mask, step: float, normalize=False, t_index: int = 0) -> tuple[float, float]:
    """The model's own guidance loss at the first sampling timestep before and after one gradient step on the
    latent (``loss_at(store, rows, masks, enc) -> per-element losses``)."""
    from bench.diffusion.sampling import latent_guidance_step, make_scheduler, seeded_noise
    from methods.didgen.generate import encode_prompts
    from bench.diffusion.attention import storing_processors

    model._ensure_model()
    parts, c = model.parts, model.config
    parts.unet.set_attn_processor(storing_processors(parts.unet, store, fused=False))
    sched = make_scheduler(c.sampler, parts.scheduler)
    sched.set_timesteps(c.sample_steps)
    t = sched.timesteps[t_index]
    enc = encode_prompts(parts, [model._prompt(Condition(), 0)], model.placeholder_ids)
    z = seeded_noise(parts.sample_shape(1)[1:], [7], sched.init_noise_sigma)
    rows = torch.tensor([0])

    def loss_fn(x):
        store.begin_step(t)
        parts.unet(sched.scale_model_input(x, t), t, encoder_hidden_states=enc.cond)
        out = loss_at(store, rows, {0: mask.float()}, enc)
        return (out[0] if isinstance(out, tuple) else out).sum()

    moved, before = latent_guidance_step(z, loss_fn, step, normalize=normalize)
    with torch.no_grad():
        after = float(loss_fn(moved))
    return before, after
