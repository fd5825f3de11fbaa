"""LoRA through peft and attention-only parameter selection."""
import torch
from diffusers import UNet2DConditionModel

from bench.diffusion.finetune import add_lora, attention_parameters, lora_state_dict, trainable_parameters


def _unet():
    torch.manual_seed(0)
    return UNet2DConditionModel(sample_size=8, in_channels=3, out_channels=3, block_out_channels=(16, 32),
                                layers_per_block=1, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=16,
                                attention_head_dim=4, norm_num_groups=8).eval()


def test_lora_trains_adapters_only_and_starts_as_identity():
    unet = _unet()
    x, text = torch.randn(1, 3, 8, 8), torch.randn(1, 5, 16)
    with torch.no_grad():
        before = unet(x, 3, encoder_hidden_states=text).sample
    params = add_lora(unet, rank=2)
    assert params and {id(p) for p in trainable_parameters(unet)} == {id(p) for p in params}
    with torch.no_grad():
        torch.testing.assert_close(unet(x, 3, encoder_hidden_states=text).sample, before)  # LoRA B starts at zero
    unet(x, 3, encoder_hidden_states=text).sample.sum().backward()
    assert all(p.grad is not None for p in params)
    assert lora_state_dict(unet) and all("lora" in k for k in lora_state_dict(unet))


def test_attention_parameter_selection():
    unet = _unet()
    kv = attention_parameters(unet, "cross-kv")
    names = [n for n, p in unet.named_parameters() if p.requires_grad]
    assert kv and all("attn2.to_k" in n or "attn2.to_v" in n for n in names)
    everything = attention_parameters(unet, "attention")
    assert len(everything) > len(kv)
