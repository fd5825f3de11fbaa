"""AttenCraft's Stage I on concept-mini with mini-sd: the masks recover the true object masks."""
import numpy as np
import torch


def test_mask_creation_recovers_concept_mini_objects():
    """Mini profile settings (cross maps at 16x16, no self-attention enhancement: see README). Mean IoU over 8
    scenes x 2 concepts, measured 0.38 (chance for these object sizes is about 0.1; the masks of the other
    concept score 0.0)."""
    from diffusers import DDPMScheduler

    from bench.config import build, method_config_file, profile_section
    from bench.data.concept_mini import ConceptMini
    from bench.diffusion.models import load_mini_sd
    from bench.metrics.concept import mask_iou
    from bench.tasks.common import resize_image
    from methods.attencraft import AttenCraft
    from methods.attencraft.train import create_masks

    cfg = build(AttenCraft.Config, profile_section(method_config_file(AttenCraft), "mini"), "mini")
    parts = load_mini_sd()
    scheduler = DDPMScheduler.from_config(parts.scheduler.config)
    train = ConceptMini(n_pairs=8).load("train")
    ious, swapped = [], []
    for i in range(len(train)):
        s = train[i]
        method = AttenCraft(cfg)
        method.parts = parts
        tokens = [f"<c{i}a>", f"<c{i}b>"]
        method._placeholders(tokens, s.meta["kinds"])
        z0 = parts.codec.encode(resize_image(s.image, 32)[None])
        masks, _ = create_masks(parts, z0, tokens, cfg, 16, 16, torch.Generator().manual_seed(i), scheduler)
        assert not (masks[0] & masks[1]).any()
        ious.extend(mask_iou(masks, s.meta["object_masks"]))
        swapped.extend(mask_iou(masks.flip(0), s.meta["object_masks"]))
    print(f"concept-mini mask IoU: {np.mean(ious):.3f} (swapped concepts: {np.mean(swapped):.3f})")
    assert np.mean(ious) > 0.3
    assert np.mean(swapped) < 0.1
