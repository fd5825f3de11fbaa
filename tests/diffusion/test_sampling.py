"""Samplers, classifier-free guidance, DDIM inversion and latent guidance on the shipped mini-sd."""
import pytest
import torch

from bench.data.generic_world import render_scene
from bench.diffusion.attention import AttentionStore, storing_processors
from bench.diffusion.models import load_mini_sd
from bench.diffusion.sampling import (SCHEDULERS, ddim_invert, ddim_scheduler_for_inversion, latent_guidance_step,
                                      make_scheduler, sample)


@pytest.fixture(scope="module")
def parts():
    return load_mini_sd()


@pytest.fixture(scope="module")
def scene():
    image, objects, caption = render_scene(7, "test", 3, 32, n_objects=2)
    return torch.from_numpy(image).permute(2, 0, 1)[None], objects, caption


@pytest.mark.parametrize("name", sorted(SCHEDULERS))
def test_every_sampler_runs_with_guidance(parts, name):
    cond, uncond = parts.encode_prompt(["a red circle"]), parts.encode_prompt([""])
    out = sample(parts.unet, cond, make_scheduler(name, parts.scheduler), parts.codec, steps=3, guidance_scale=3.0,
                 uncond=uncond, generator=torch.Generator().manual_seed(0))
    assert out.shape == (1, 3, 32, 32) and torch.isfinite(out).all()


def test_guidance_scale_one_ignores_the_unconditional_branch(parts):
    cond = parts.encode_prompt(["a blue square"])
    runs = [sample(parts.unet, cond, make_scheduler("ddim", parts.scheduler), parts.codec, steps=3, guidance_scale=1.0,
                   uncond=u, generator=torch.Generator().manual_seed(1)) for u in (None, parts.encode_prompt([""]))]
    torch.testing.assert_close(runs[0], runs[1])
    with pytest.raises(ValueError, match="unconditional"):
        sample(parts.unet, cond, make_scheduler("ddim", parts.scheduler), parts.codec, steps=2, guidance_scale=5.0)


def test_callback_can_replace_latents(parts):
    cond = parts.encode_prompt(["a red circle"])
    seen = []

    def callback(i, t, latents):
        seen.append(int(t))
        return torch.zeros_like(latents) if i == 0 else None

    base = sample(parts.unet, cond, make_scheduler("ddim", parts.scheduler), parts.codec, steps=3, guidance_scale=1.0,
                  generator=torch.Generator().manual_seed(2))
    moved = sample(parts.unet, cond, make_scheduler("ddim", parts.scheduler), parts.codec, steps=3, guidance_scale=1.0,
                   generator=torch.Generator().manual_seed(2), callback=callback)
    assert len(seen) == 3 and seen == sorted(seen, reverse=True)
    assert not torch.allclose(base, moved)


def test_ddim_inversion_round_trip(parts, scene):
    image, _, caption = scene
    cond = parts.encode_prompt([caption])
    x0 = parts.codec.encode(image)
    x_t = ddim_invert(parts.unet, cond, parts.scheduler, x0, steps=20)
    again = sample(parts.unet, cond, ddim_scheduler_for_inversion(parts.scheduler), parts.codec, steps=20,
                   guidance_scale=1.0, latents=x_t, decode=False)
    from_noise = sample(parts.unet, cond, ddim_scheduler_for_inversion(parts.scheduler), parts.codec, steps=20,
                        guidance_scale=1.0, latents=torch.randn(x0.shape, generator=torch.Generator().manual_seed(0)),
                        decode=False)
    error = (again - x0).abs().mean().item()
    assert error < 0.1, error
    assert error < 0.25 * (from_noise - x0).abs().mean().item()


def test_latent_guidance_step_lowers_its_loss(parts, scene):
    image, objects, caption = scene
    store = AttentionStore(resolutions={16}, mode="last", keep_grad=True)
    old = parts.unet.attn_processors
    parts.unet.set_attn_processor(storing_processors(parts.unet, store, fused=False))
    cond = parts.encode_prompt([caption])
    mask = torch.nn.functional.adaptive_avg_pool2d(torch.from_numpy(objects[0].mask).float()[None, None], 16)[0, 0]
    token = caption.split().index(objects[0].shape) + 1
    t = torch.tensor(500)

    def loss_fn(x):
        store.begin_step(t)
        parts.unet(x, t, encoder_hidden_states=cond)
        m = store.maps(16)[0, :, :, token]
        return 1 - (m * mask).sum() / m.sum()  # attention mass of the word outside the object

    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    try:
        moved, before = latent_guidance_step(x, loss_fn, step_size=0.5, normalize=True)
        with torch.no_grad():
            after = float(loss_fn(moved))
    finally:
        parts.unet.set_attn_processor(old)
    assert moved.shape == x.shape and not moved.requires_grad
    assert after < before


def test_unet_kwargs_fn_sees_the_guided_batch_and_its_result_reaches_the_unet(parts):
    from diffusers import ControlNetModel

    cond, uncond = parts.encode_prompt(["a red circle"]), parts.encode_prompt([""])
    controlnet = ControlNetModel.from_unet(parts.unet, conditioning_embedding_out_channels=(16,))
    with torch.no_grad():  # residual shapes of this UNet (a fresh ControlNet's are all zero)
        down, mid = controlnet(torch.zeros(2, 3, 32, 32), 10, encoder_hidden_states=torch.cat([uncond, cond]),
                               controlnet_cond=torch.zeros(2, 3, 32, 32), return_dict=False)
    seen = []

    def residuals(value):
        def fn(x, t, context):
            seen.append((x.shape[0], torch.equal(context[:1], uncond), torch.equal(context[1:], cond)))
            return {"down_block_additional_residuals": [torch.full_like(d, value) for d in down],
                    "mid_block_additional_residual": torch.full_like(mid, value)}
        return fn

    def run(fn):
        return sample(parts.unet, cond, make_scheduler("ddim", parts.scheduler), parts.codec, steps=2,
                      guidance_scale=3.0, uncond=uncond, generator=torch.Generator().manual_seed(5), unet_kwargs_fn=fn)

    base, zero, pushed = run(None), run(residuals(0.0)), run(residuals(0.5))
    assert seen == [(2, True, True)] * 4  # once per step, on the [uncond, cond] batch
    torch.testing.assert_close(base, zero)  # a zero residual changes nothing
    assert (pushed - base).abs().mean() > 1e-3  # a non-zero one reaches the UNet
