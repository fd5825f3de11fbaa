"""Layout-guidance losses and attention mask read-out (research/ch4_didgen.md section 8.2 (3))."""
import numpy as np
import pytest
import torch

from bench.diffusion.layout import (
    attention_mask_readout, attention_score_map, ca_layout_loss, guidance_step_sizes, layout_loss,
    sa_layout_loss, sa_layout_loss_per_pixel, token_softmax,
)


def _disk(side: int, cy: float, cx: float, r: float) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r ** 2


def _iou(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a & b).sum() / (a | b).sum())


def test_ca_loss_closed_forms():
    m = _disk(16, 7, 8, 4).float()
    assert ca_layout_loss(m, m).item() == pytest.approx(0.0, abs=1e-6)
    assert ca_layout_loss(1 - m, m).item() == pytest.approx(2.0, abs=1e-6)
    # A uniform map scores 1 - 1/N inside plus 1/N outside = 1.
    assert ca_layout_loss(torch.full((16, 16), 1 / 256), m).item() == pytest.approx(1.0, abs=1e-6)


def test_sa_loss_closed_forms():
    m = _disk(8, 3, 4, 2)
    flat = m.flatten().float()
    block = torch.outer(flat, flat) / flat.sum() + torch.outer(1 - flat, 1 - flat) / (1 - flat).sum()
    assert torch.allclose(block.sum(-1), torch.ones(64))
    assert sa_layout_loss(block, m).item() == pytest.approx(0.0, abs=1e-7)
    uniform = torch.full((64, 64), 1 / 64)
    assert sa_layout_loss(uniform, m).item() == pytest.approx(1 / 64, rel=1e-6)


def test_sa_vectorised_equals_per_pixel_loop_and_batches():
    g = torch.Generator().manual_seed(0)
    sa = torch.rand(3, 256, 256, generator=g).softmax(-1)
    masks = torch.stack([_disk(16, 5 + 2 * k, 8, 3 + k) for k in range(3)])
    loops = [sa_layout_loss_per_pixel(sa[k], masks[k]) for k in range(3)]
    for k in range(3):
        assert sa_layout_loss(sa[k], masks[k]).item() == pytest.approx(loops[k].item(), rel=1e-5)
    assert sa_layout_loss(sa, masks).item() == pytest.approx(torch.stack(loops).mean().item(), rel=1e-5)


def test_token_softmax_drops_bos_and_padding():
    ca = torch.rand(4, 4, 77).softmax(-1)
    out = token_softmax(ca, eot=8)
    assert out.shape == (4, 4, 7)
    assert torch.allclose(out.sum(-1), torch.ones(4, 4))
    ca[..., 4] = 1.0  # the token at position 4 dominates -> entry 3 after dropping BOS
    assert torch.allclose(token_softmax(ca, eot=8)[..., 3], torch.ones(4, 4), atol=1e-6)
    assert token_softmax(ca, eot=8, smooth=True).shape == (4, 4, 7)
    with pytest.raises(ValueError, match="no prompt tokens"):
        token_softmax(ca, eot=1)


def test_step_sizes_decay_and_stop_at_half():
    eta = guidance_step_sizes(51)
    ref = 20 * np.sqrt(np.linspace(1.0, 0.5, 51))
    assert np.allclose(eta[:25], ref[:25])
    assert all(e == 0 for e in eta[25:])
    assert eta[0] == pytest.approx(20.0)


def _affinity(mask: torch.Tensor, within: float = 1.0, across: float = 0.02) -> torch.Tensor:
    flat = mask.flatten().float()
    same = torch.outer(flat, flat) + torch.outer(1 - flat, 1 - flat)
    a = same * within + (1 - same) * across
    return a / a.sum(-1, keepdim=True)


def test_readout_recovers_the_mask_from_noisy_attention():
    g = torch.Generator().manual_seed(1)
    mask32 = _disk(32, 13, 17, 8)
    mask16 = torch.nn.functional.interpolate(mask32[None, None].float(), size=16, mode="area")[0, 0]
    ca = (mask16 + 0.35 * torch.rand(16, 16, generator=g)).clamp(0, 1)
    sa = _affinity(mask32)
    out = attention_mask_readout(sa, ca, out_size=64)
    mask64 = _disk(64, 26.5, 34.5, 16)
    assert out.dtype == torch.bool and out.shape == (64, 64)
    assert _iou(out, mask64) > 0.9


def test_matrix_power_is_not_elementwise():
    g = torch.Generator().manual_seed(2)
    sa = torch.rand(64, 64, generator=g).softmax(-1)
    ca = torch.rand(8, 8, generator=g)
    score = attention_score_map(sa, ca, tau=4, upsample="bilinear").numpy()
    p = np.linalg.matrix_power(sa.double().numpy(), 4)
    p = (p - p.min()) / (p.max() - p.min())
    ref = p @ ca.double().numpy().flatten()  # 8x8 map at the SA side: no resize
    ref = ((ref - ref.min()) / (ref.max() - ref.min())).reshape(8, 8)
    assert np.allclose(score, ref, atol=1e-5)
    e = sa.double().numpy() ** 4
    e = (e - e.min()) / (e.max() - e.min())
    wrong = e @ ca.double().numpy().flatten()
    wrong = ((wrong - wrong.min()) / (wrong.max() - wrong.min())).reshape(8, 8)
    assert np.abs(score - wrong).max() > 0.05


def test_closing_fills_pinholes():
    mask = _disk(32, 15, 15, 10)
    holed = mask.clone()
    holed[12, 12] = holed[18, 16] = holed[15, 20] = False
    sa = torch.eye(32 * 32)
    plain = attention_mask_readout(sa, holed.float(), out_size=32, closing_kernel=0, upsample="nearest")
    closed = attention_mask_readout(sa, holed.float(), out_size=32, closing_kernel=3, upsample="nearest")
    assert not plain[12, 12] and torch.equal(plain, holed)
    assert torch.equal(closed, mask)


def _tiny_unet():
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    return UNet2DConditionModel(
        sample_size=32, in_channels=4, out_channels=4, block_out_channels=(32, 64, 64), layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32, attention_head_dim=2, norm_num_groups=16)


def test_guidance_step_lowers_layout_loss_on_a_tiny_unet():
    """Gradients reach the latent, and one small step along -grad lowers L_CA + L_SA."""
    from bench.diffusion.attention import AttentionStore, storing_processors

    unet = _tiny_unet().eval()
    store = AttentionStore(cross=True, self_attention=True, resolutions={16, 32}, mode="last", keep_grad=True)
    unet.set_attn_processor(storing_processors(unet, store, fused=False))
    g = torch.Generator().manual_seed(3)
    text = torch.randn(1, 77, 32, generator=g)
    mask = _disk(64, 30, 24, 14)
    latent = torch.randn(1, 4, 32, 32, generator=g).requires_grad_(True)

    def loss_at(z: torch.Tensor) -> torch.Tensor:
        store.begin_step(500)
        unet(z, 500, encoder_hidden_states=text)
        return layout_loss(store, mask, token_index=4, eot=8)

    loss = loss_at(latent)
    (grad,) = torch.autograd.grad(loss, latent)
    assert grad.abs().sum() > 0
    with torch.no_grad():
        after = loss_at(latent - 1e-2 * grad / grad.norm())
    assert after.item() < loss.item()
