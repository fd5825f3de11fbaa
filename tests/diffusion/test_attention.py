"""Attention capture: shapes, normalisation, no effect on outputs, modes and gradients."""
import pytest
import torch
from diffusers import UNet2DConditionModel

from bench.diffusion.attention import AttentionStore, classic_processors, layer_info, storing_processors, token_maps


@pytest.fixture(scope="module")
def unet():
    torch.manual_seed(0)
    return UNet2DConditionModel(sample_size=16, in_channels=3, out_channels=3, block_out_channels=(16, 32),
                                layers_per_block=1, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=24,
                                attention_head_dim=4, norm_num_groups=8).eval()


def _inputs(batch=2):
    g = torch.Generator().manual_seed(1)
    return torch.randn(batch, 3, 16, 16, generator=g), torch.randn(batch, 7, 24, generator=g)


def test_layer_info_parses_module_paths():
    info = layer_info("up_blocks.1.attentions.0.transformer_blocks.0.attn2.processor")
    assert info.cross and info.place == "up"
    assert not layer_info("down_blocks.0.attentions.0.transformer_blocks.0.attn1.processor").cross


def test_capture_shapes_and_rows_sum_to_one(unet):
    x, text = _inputs()
    store = AttentionStore(cross=True, self_attention=True)
    unet.set_attn_processor(storing_processors(unet, store))
    with torch.no_grad():
        unet(x, 10, encoder_hidden_states=text)
    cross, selfm = store.maps(16, "cross"), store.maps(16, "self")
    assert cross.shape == (2, 16, 16, 7)
    assert selfm.shape == (2, 16, 16, 256)
    torch.testing.assert_close(cross.sum(-1), torch.ones(2, 16, 16))
    torch.testing.assert_close(selfm.sum(-1), torch.ones(2, 16, 16))
    with pytest.raises(KeyError, match="recorded"):
        store.maps(4, "cross")


@pytest.mark.parametrize("fused", [True, False])
def test_capture_does_not_change_outputs(unet, fused):
    x, text = _inputs()
    from diffusers.models.attention_processor import AttnProcessor2_0

    unet.set_attn_processor(AttnProcessor2_0())  # diffusers' default (SDPA) processor
    with torch.no_grad():
        reference = unet(x, 10, encoder_hidden_states=text).sample
    store = AttentionStore(cross=True, self_attention=True)
    unet.set_attn_processor(storing_processors(unet, store, fused=fused))
    with torch.no_grad():
        captured = unet(x, 10, encoder_hidden_states=text).sample
    unet.set_attn_processor(classic_processors(unet))
    with torch.no_grad():
        classic = unet(x, 10, encoder_hidden_states=text).sample
    assert store.layer_maps(), "nothing was recorded"
    torch.testing.assert_close(captured, reference, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(classic, reference, atol=1e-5, rtol=1e-4)


def test_average_per_step_and_last_modes(unet):
    x, text = _inputs(1)
    stores = {m: AttentionStore(mode=m) for m in ("average", "per_step", "last")}
    results = {}
    for mode, store in stores.items():
        unet.set_attn_processor(storing_processors(unet, store))
        for t in (900, 100):
            store.begin_step(t)
            with torch.no_grad():
                unet(x + t / 1000, t, encoder_hidden_states=text)
        results[mode] = store
    per_step = results["per_step"]
    assert [t for t, _ in per_step.steps] == [900, 100]
    first, last = per_step.maps(16, step=0), per_step.maps(16, step=1)
    torch.testing.assert_close(results["average"].maps(16), (first + last) / 2)
    torch.testing.assert_close(results["last"].maps(16), last)
    assert token_maps(per_step, 16, [2, 3], step=1, batch_index=0).shape == (2, 16, 16)


def test_keep_grad_and_batch_slice(unet):
    x, text = _inputs()
    store = AttentionStore(mode="last", keep_grad=True)
    store.batch_slice = slice(1, 2)
    unet.set_attn_processor(storing_processors(unet, store, fused=False))
    x = x.clone().requires_grad_(True)
    unet(x, 10, encoder_hidden_states=text)
    maps = store.maps(16)
    assert maps.shape[0] == 1
    (grad,) = torch.autograd.grad(maps[..., 3].sum(), x)
    assert grad[1].abs().sum() > 0 and grad[0].abs().sum() == 0  # only the kept sample's map depends on it


def test_resolution_and_place_filters(unet):
    x, text = _inputs(1)
    store = AttentionStore(resolutions={8}, places={"down"})
    unet.set_attn_processor(storing_processors(unet, store))
    with torch.no_grad():
        unet(x, 10, encoder_hidden_states=text)
    assert not store.layer_maps()  # 8x8 cross-attention exists only in the mid block
    store = AttentionStore(places={"up"})
    unet.set_attn_processor(storing_processors(unet, store))
    with torch.no_grad():
        unet(x, 10, encoder_hidden_states=text)
    assert store.layer_maps() and all(n.startswith("up_blocks") for n in store.layer_maps())
