"""sd-finetune on a tiny random Stable Diffusion folder (the paper profile's loading code), a few steps."""
import torch

from bench.data.derm_mini import DermMini
from bench.interface import Condition, RunContext
from baselines.sd_finetune import SDFinetune, SDFinetuneConfig


def test_fits_with_plain_words_and_samples_deterministically(tmp_path):
    from bench.diffusion.models import make_tiny_sd

    folder = make_tiny_sd(tmp_path / "sd", seed=0, sample_size=16,
                          words=["an", "image", "of", "lesion", "on", "skin", "dermoscopic", "melanoma", "a"])
    train = list(DermMini(image_size=64, sizes={"train": 8, "val": 1, "test": 1}).load("train"))
    config = SDFinetuneConfig(backbone=str(folder), resolution=32, steps=3, batch_size=2, lr=1e-3, warmup_steps=0,
                              sample_steps=3, guidance_scale=2.0, prompt="condition")
    model = SDFinetune(config)
    model._ensure_model()
    before = {k: v.clone() for k, v in model.parts.unet.state_dict().items()}
    model.fit(train, RunContext())
    after = model.parts.unet.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)  # the UNet was trained
    assert "<lesion>" not in model.parts.tokenizer.get_vocab()
    conds = [Condition(label=0, prompt="An image of <lesion> on <skin>. A dermoscopic image of melanoma.",
                       meta={"index": 0}), Condition(label=2, meta={"index": 1})]
    out = list(model.generate(conds, RunContext(seed=3)))
    assert out[0].prompt == "An image of lesion on skin. A dermoscopic image of melanoma."
    assert out[1].prompt == "An image of lesion on skin."
    assert out[0].image.shape == (3, 32, 32) and out[0].mask is None and out[0].label == 0
    again = next(model.generate(conds[:1], RunContext(seed=3)))
    assert torch.allclose(again.image, out[0].image, atol=1e-5)
