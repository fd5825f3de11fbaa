"""K/V injection (with recorded content queries), AdaIN and the latent style loss (bench/diffusion/style.py)."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bench.diffusion.sampling import latent_guidance_step
from bench.diffusion.style import (InjectingAttnProcessor, StyleKV, adain, channel_statistics,
                                   decoder_self_attention_layers, style_statistics_loss)

NAME = "up_blocks.1.attentions.0.transformer_blocks.0.attn1.processor"


def _attention(seed=0):
    from diffusers.models.attention_processor import Attention

    torch.manual_seed(seed)
    return Attention(query_dim=8, heads=2, dim_head=4).eval()


def _manual(attn, query, key, value):
    """Reference multi-head attention of pre-head (B, N, D) tensors with torch's SDPA, then the output projection."""
    b, n, d = query.shape
    split = lambda x: x.view(b, -1, attn.heads, d // attn.heads).transpose(1, 2)  # noqa: E731
    out = F.scaled_dot_product_attention(split(query), split(key), split(value), scale=attn.scale)
    return attn.to_out[0](out.transpose(1, 2).reshape(b, n, d))


def test_decoder_layers_are_up_block_self_attention_in_order():
    from diffusers import UNet2DConditionModel

    unet = UNet2DConditionModel(sample_size=8, in_channels=4, out_channels=4, block_out_channels=(8, 16),
                                layers_per_block=1, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=8,
                                attention_head_dim=4, norm_num_groups=4)
    names = decoder_self_attention_layers(unet)
    assert names == [n for n in unet.attn_processors if n.startswith("up_blocks") and ".attn1." in n]
    assert len(names) == 2
    assert decoder_self_attention_layers(unet, last=1) == names[-1:]
    assert decoder_self_attention_layers(unet, last=0) == []
    assert decoder_self_attention_layers(unet, last=3) == names  # more than there are: all (was a negative slice)


def test_injection_uses_recorded_keys_values_with_the_other_rows_query():
    attn = _attention()
    kv = StyleKV([NAME], gamma=1.0, temperature=1.0)
    attn.set_processor(InjectingAttnProcessor(None, NAME, kv, fused=False))
    torch.manual_seed(1)
    style_h, batch_h = torch.randn(1, 6, 8), torch.randn(2, 6, 8)
    with torch.no_grad():
        kv.mode = "record"
        style_out = attn(style_h)
        kv.mode = "off"
        plain = attn(batch_h)
        kv.plan(0, style_rows=[1], query_rows=[0], kv_rows=[0])
        injected = attn(batch_h)
        k_s, v_s = attn.to_k(style_h), attn.to_v(style_h)
        expected_style_row = _manual(attn, attn.to_q(batch_h[:1]), k_s, v_s)
    assert kv.recorded_steps == 1
    assert torch.allclose(style_out, _manual(attn, attn.to_q(style_h), k_s, v_s), atol=1e-5)
    assert torch.allclose(injected[0], plain[0], atol=1e-6)  # the query row is untouched
    assert torch.allclose(injected[1], expected_style_row[0], atol=1e-5)
    assert not torch.allclose(injected[1], plain[1], atol=1e-3)


def test_query_blend_and_temperature():
    attn = _attention(seed=3)
    kv = StyleKV([NAME], gamma=0.75, temperature=1.5)
    attn.set_processor(InjectingAttnProcessor(None, NAME, kv, fused=False))
    torch.manual_seed(2)
    style_h, batch_h = torch.randn(1, 5, 8), torch.randn(2, 5, 8)
    with torch.no_grad():
        kv.mode = "record"
        attn(style_h)
        kv.plan(0, style_rows=[1], query_rows=[0], kv_rows=[0])
        injected = attn(batch_h)
        q = attn.to_q(batch_h)
        q_hat = 1.5 * (0.75 * q[:1] + 0.25 * q[1:])
        expected = _manual(attn, q_hat, attn.to_k(style_h), attn.to_v(style_h))
    assert torch.allclose(injected[1], expected[0], atol=1e-5)


def test_other_layers_and_cross_attention_untouched():
    from diffusers.models.attention_processor import AttnProcessor

    attn = _attention()
    kv = StyleKV(["down_blocks.0.attentions.0.transformer_blocks.0.attn1.processor"])
    attn.set_processor(InjectingAttnProcessor(None, NAME, kv, fused=False))
    h = torch.randn(2, 4, 8)
    with torch.no_grad():
        kv.mode = "record"
        ours = attn(h)
        attn.set_processor(AttnProcessor())
        reference = attn(h)
    assert torch.allclose(ours, reference, atol=1e-6)
    assert kv.recorded_steps == 0


def test_plan_rejects_unrecorded_step_and_bad_values():
    kv = StyleKV([NAME])
    with pytest.raises(IndexError, match="not recorded"):
        kv.plan(0, [1], [0], [0])
    with pytest.raises(ValueError, match="gamma"):
        StyleKV([NAME], gamma=1.5)


def test_style_loss_matches_numpy_reference():
    rng = np.random.default_rng(0)
    z, s = rng.normal(size=(2, 4, 5, 6)), rng.normal(2.0, 3.0, size=(2, 4, 5, 6))
    expected = sum(((z[b].mean((1, 2)) - s[b].mean((1, 2))) ** 2).sum()
                   + ((np.sqrt(z[b].var((1, 2)) + 1e-6) - np.sqrt(s[b].var((1, 2)) + 1e-6)) ** 2).sum()
                   for b in range(2))
    got = style_statistics_loss(torch.tensor(z), torch.tensor(s))
    assert got.item() == pytest.approx(expected, rel=1e-9)
    assert style_statistics_loss(torch.tensor(z), torch.tensor(z)).item() == pytest.approx(0.0, abs=1e-12)
    mean, std = channel_statistics(torch.tensor(z))
    assert mean.shape == std.shape == (2, 4)


def test_style_loss_decreases_under_its_gradient_step():
    torch.manual_seed(0)
    z, z_style = torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8) * 2.0 + 1.0
    moved, before = latent_guidance_step(z, lambda x: style_statistics_loss(x, z_style), step_size=16.0)  # h*w/2 would match the mean in one step
    after = style_statistics_loss(moved, z_style).item()
    assert before > 1.0
    assert after < 0.5 * before
    mu, sd = channel_statistics(moved)
    mu0, sd0 = channel_statistics(z)
    mu_s, sd_s = channel_statistics(z_style)
    assert ((mu - mu_s).abs() < (mu0 - mu_s).abs()).all()
    assert ((sd - sd_s).abs() < (sd0 - sd_s).abs()).all()


def test_recorded_content_queries_blend_with_the_current_query():
    """StyleID: the content pass records queries, the style pass keys/values; the injected call blends the recorded
    content query with its own (gamma), scales by tau and attends over the style K/V."""
    attn = _attention(seed=5)
    kv = StyleKV([NAME], gamma=0.75, temperature=1.5)
    attn.set_processor(InjectingAttnProcessor(None, NAME, kv, fused=False))
    torch.manual_seed(4)
    content_h, style_h, current_h = torch.randn(2, 6, 8), torch.randn(2, 6, 8), torch.randn(2, 6, 8)
    with torch.no_grad():
        kv.mode = "record_queries"
        attn(content_h)
        assert kv.recorded_query_steps == 1 and kv.recorded_steps == 0  # queries only
        kv.mode = "record"
        attn(style_h)
        kv.plan(0, style_rows=[0, 1], query_rows=[1, 0], kv_rows=[0, 1], recorded_queries=True)
        injected = attn(current_h)
        q_hat = 1.5 * (0.75 * attn.to_q(content_h)[[1, 0]] + 0.25 * attn.to_q(current_h))
        expected = _manual(attn, q_hat, attn.to_k(style_h), attn.to_v(style_h))
        kv.plan(0, style_rows=[0, 1], query_rows=[1, 0], kv_rows=[0, 1])  # batch queries: current rows 1, 0
        batch_q = _manual(attn, 1.5 * (0.75 * attn.to_q(current_h)[[1, 0]] + 0.25 * attn.to_q(current_h)),
                          attn.to_k(style_h), attn.to_v(style_h))
        assert torch.allclose(attn(current_h), batch_q, atol=1e-5)
    assert torch.allclose(injected, expected, atol=1e-5)
    assert not torch.allclose(injected, batch_q, atol=1e-3)
    kv.reset()
    assert kv.recorded_query_steps == 0 and not kv.recorded_queries


def test_plan_with_recorded_queries_needs_them_recorded():
    attn = _attention()
    kv = StyleKV([NAME])
    attn.set_processor(InjectingAttnProcessor(None, NAME, kv, fused=False))
    with torch.no_grad():
        kv.mode = "record"
        attn(torch.randn(1, 4, 8))
    kv.plan(0, [0], [0], [0])  # K/V alone suffice for batch queries
    with pytest.raises(IndexError, match="queries of step 0 not recorded"):
        kv.plan(0, [0], [0], [0], recorded_queries=True)


def test_adain_gives_the_style_statistics_and_keeps_the_content_pattern():
    torch.manual_seed(0)
    content = torch.randn(2, 4, 6, 6) * 0.5 + 0.3
    style = torch.randn(2, 4, 6, 6) * torch.tensor([1.0, 2.0, 3.0, 0.5])[:, None, None] - 1.0
    out = adain(content, style)
    mu, sd = channel_statistics(out)
    mu_s, sd_s = channel_statistics(style)
    torch.testing.assert_close(mu, mu_s, atol=1e-5, rtol=0)
    torch.testing.assert_close(sd, sd_s, atol=1e-4, rtol=1e-4)
    # per channel an increasing affine map of the content: same ordering, correlation 1
    flat_c, flat_o = content.flatten(2), out.flatten(2)
    corr = torch.stack([torch.corrcoef(torch.stack([flat_c[b, c], flat_o[b, c]]))[0, 1]
                        for b in range(2) for c in range(4)])
    assert (corr > 0.9999).all()
    torch.testing.assert_close(adain(style, style), style, atol=1e-5, rtol=0)
    one = adain(content, style[:1])  # a single style broadcasts over the batch
    torch.testing.assert_close(channel_statistics(one)[0], mu_s[:1].expand(2, -1), atol=1e-5, rtol=0)
