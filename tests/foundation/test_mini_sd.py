"""The shipped mini-sd: architecture, determinism, and the attention-mask loss it was trained with."""
import numpy as np
import pytest
import torch

from bench.diffusion.models import load_mini_sd
from bench.foundation.mini_sd import attention_mask_loss, object_word_targets


@pytest.fixture(scope="module")
def parts():
    return load_mini_sd()


def test_architecture_and_shapes(parts):
    unet = parts.unet
    cross = [n for n in unet.attn_processors if "attn2" in n]
    assert len(cross) == 7 and unet.config.sample_size == 32 and unet.config.in_channels == 3
    assert unet.config.cross_attention_dim == parts.text_encoder.config.hidden_size
    cond = parts.encode_prompt(["a red circle and a blue square"])
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a = unet(x, 400, encoder_hidden_states=cond.expand(2, -1, -1)).sample
        b = unet(x, 400, encoder_hidden_states=cond.expand(2, -1, -1)).sample
    assert a.shape == x.shape
    torch.testing.assert_close(a, b)


def test_object_word_targets_point_at_the_words():
    from bench.data.generic_world import render_scene

    _, objects, caption = render_scene(7, "train", 5, 32, n_objects=2)
    targets, weights = object_word_targets(objects, 16, 77)
    words = caption.split()
    for obj in objects:
        for word in (obj.colour, obj.shape):
            token = words.index(word) + 1
            assert weights[token] == 1
            torch.testing.assert_close(targets[token].sum(), torch.tensor(1.0))
    assert weights[0] == 0 and weights.sum() == sum(3 if o.texture != "plain" else 2 for o in objects)


def test_attention_mask_loss_is_zero_at_the_target_and_positive_elsewhere():
    class FakeStore:
        def __init__(self, maps):
            self.maps, self.resolution_of = maps, {"layer": 4}

        def layer_maps(self):
            return {"layer": self.maps}

    target = torch.zeros(1, 3, 16)
    target[0, 1, :4] = 0.25
    weights = torch.tensor([[0.0, 1.0, 0.0]])
    exact = target.transpose(1, 2).clone() + 1e-9
    uniform = torch.full((1, 16, 3), 1 / 3)
    assert attention_mask_loss(FakeStore(exact), {4: target}, weights) < 1e-5
    expected = float(np.log(4))  # KL(uniform-on-4 || uniform-on-16) = log(16/4)
    assert abs(float(attention_mask_loss(FakeStore(uniform), {4: target}, weights)) - expected) < 1e-4
