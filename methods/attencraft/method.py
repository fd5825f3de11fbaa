"""attencraft: attention-based disentanglement of several concepts learnt from one image (thesis chapter 3;
spec ``research/ch3_attencraft.md``; README.md lists every thesis-vs-code decision and its option).

``fit`` customises the base model independently on every scene of the fit set (one image with N concepts,
``meta``: ``scene``, ``placeholders``, ``class_words``): Stage I builds one mask per concept from the attention of
one UNet pass (Eq. 3.2-3.3) and single-concept sampling ratios from masked attention scores (Eq. 3.4-3.5); Stage II
trains the cross-attention keys/values (and the placeholder embeddings) with feature-retaining training
(Eq. 3.6-3.8). ``generate`` samples each condition with its scene's weights (``Condition.meta["scene"]``); on the
condition flagged ``meta["report_masks"]`` the sample carries the learned masks as ``meta["attention_masks"]``
(the concept task scores them against true masks).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch

from bench.diffusion.customize import SceneCustomizer, SceneFit
from bench.interface import Sample


@dataclass(frozen=True)
class AttenCraftConfig:
    """Hyperparameters (thesis section 3.3 / spec 1.7; [C] = the reference code's value, [I] = inferred)."""

    backbone: str = "stable-diffusion-2-1-base"
    """``mini-sd`` or a local diffusers Stable Diffusion folder (thesis: SD 2.1-base)."""
    resolution: int = 512
    """Training and sampling side in pixels (images squashed, no augmentation [C])."""
    steps: int = 300
    """Training steps per scene (thesis 300; code 500)."""
    lr: float = 1e-4
    """AdamW learning rate (thesis 1e-4; code 5e-5 x scale_lr = 1e-4)."""
    weight_decay: float = 1e-2
    """AdamW weight decay [C]."""
    max_grad_norm: float = 1.0
    """Gradient clipping [C]."""
    omega: float = 0.3
    """Probability of a multi-concept step (thesis 0.3, ablated 0.1-0.5 in Table 3.2)."""
    alpha: float = 0.01
    """Weight of L_attn on single-concept steps (Eq. 3.8)."""
    use_rec_loss: bool = False
    """Also back-propagate L_rec on multi-concept steps (Table 3.2's "w/ L_rec" ablation)."""
    sampling_ratio: Literal["adaptive", "equal", "no-softmax"] = "adaptive"
    """Single-concept sampling ratios: Eq. 3.5 (thesis), 1/N, or 1 - S/sum S (Table 3.3's ablations)."""
    nu: float = 2.0
    """Cross-attention suppression power (Eq. 3.2)."""
    tau: int = 4
    """Self-attention enhancement power (Eq. 3.2)."""
    self_power_mode: Literal["matrix", "elementwise"] = "matrix"
    """A_S^tau as a matrix power (code, Dataset Diffusion; spec's recommendation) or element-wise (thesis text)."""
    self_enhancement: bool = True
    """Propagate the cross maps through self-attention (Eq. 3.2; False: Fig. 3.8's "w/o self-attention enhancement",
    used by the mini profile because mini-sd's self-attention does not group object pixels, see README)."""
    gamma: float = 0.1
    """Delta-masking threshold on min-max normalised maps (Eq. 3.3)."""
    use_sot_background: bool = True
    """The start-of-text token's propagated map competes as background in Delta masking (code; not in the thesis)."""
    mask_t_max: int = 300
    """Mask creation's one forward pass uses t ~ U[0, mask_t_max) (thesis and code: 300)."""
    score_timesteps: tuple[int, ...] = (0, 20, 40, 60, 80)
    """Timesteps of the attention score S_i (Eq. 3.4)."""
    top_n: int = 5
    """Largest values averaged in S_i (Eq. 3.4)."""
    attn_loss: Literal["maxnorm-mse", "jsd"] = "maxnorm-mse"
    """L_attn: max-normalised map vs mask, MSE at the cross-attention resolution (spec's reading of the thesis' L2,
    Break-a-Scene's form) or the code's Jensen-Shannon divergence of softmaxed map and mask."""
    rec_mask_interp: Literal["bicubic", "bilinear", "nearest"] = "bicubic"
    """Upsampling of the masks to the latent size for L_rec (code: bicubic; Break-a-Scene: nearest)."""
    train_tokens: bool = True
    """Train the placeholder embeddings with the K/V weights (code, Custom Diffusion; thesis silent)."""
    class_nouns: bool = False
    """Training and sampling prompts keep the class noun after each identifier (thesis: AttenCraft and
    Break-a-Scene use "[V1] and [V2]" without them; Custom Diffusion / DisenDiff with)."""
    detach_sot_kv: bool = True
    """Detach the start-of-text key/value in cross-attention (code, Custom Diffusion; thesis silent)."""
    cross_res: int | None = None
    """Cross-attention map side (None: latent side / 4, i.e. 16 for SD at 512 px, 8 for mini-sd)."""
    self_res: int | None = None
    """Self-attention map side (None: latent side / 2, i.e. 32 for SD at 512 px, 16 for mini-sd)."""
    fused_attention: bool = True
    """Fused SDPA where no map is captured (False is faster for mini-sd's tiny heads on CPU)."""
    train_seed: int = 42
    """Training seed (combined with the run seed; code default 42)."""
    sampler: Literal["pndm", "ddim", "ddpm", "dpm-solver"] = "pndm"
    """Sampler (thesis: PNDM)."""
    sample_steps: int = 50
    """Sampling steps (thesis: 50)."""
    guidance_scale: float = 7.5
    """Classifier-free guidance (thesis: 7.5)."""
    generate_batch: int = 10
    """Images per sampling batch."""

    def validate(self) -> None:
        from bench.config import ConfigError

        if not 0.0 <= self.omega <= 1.0:
            raise ConfigError(f"method.omega must be in [0, 1], got {self.omega}")
        if self.steps < 0 or self.tau < 1 or self.top_n < 1 or not self.score_timesteps:
            raise ConfigError("method.steps >= 0, method.tau >= 1, method.top_n >= 1 and score_timesteps non-empty")


class AttenCraft(SceneCustomizer):
    """AttenCraft (module doc): per-scene K/V + placeholder customisation with attention-guided masks."""

    Config = AttenCraftConfig
    version: ClassVar[str] = "1"
    label: ClassVar[str] = "attencraft"
    state_file: ClassVar[str] = "attencraft.json"

    def resolutions(self) -> tuple[int, int]:
        c = self.config
        return c.cross_res or self.latent_side // 4, c.self_res or self.latent_side // 2

    def fit_scene(self, image: torch.Tensor, sample: Sample, tokens: list[str], class_words: list[str], seed: int,
                  advance: Any) -> SceneFit:
        from .train import train_scene

        c = self.config
        cross_res, self_res = self.resolutions()
        params = self.trainable(kv=True)
        keep = self.row_guard(tokens) if c.train_tokens else None
        result = train_scene(self.parts, image, tokens, class_words, c, params, keep, seed, cross_res, self_res,
                             advance)
        return SceneFit(masks=result.masks, report={"ratio_scores": result.scores, "sampling_ratios": result.ratios},
                        info={"mask_timestep": result.mask_timestep,
                              "mask_area": [int(m.sum()) for m in result.masks],
                              "final_losses": result.log[-1] if result.log else None})
