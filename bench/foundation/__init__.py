"""The mini foundation models shipped with the package, and their recipes.

* mini-clip (`bench.foundation.mini_clip`): a small `transformers.CLIPModel` trained contrastively on the
  generic world, derm-mini and cxr-mini. Load with `bench.diffusion.models.load_mini_clip`.
* mini-sd (`bench.foundation.mini_sd`): a pixel-space 32x32 `UNet2DConditionModel` conditioned on mini-clip's
  text tower, pretrained on the generic world. Load with `bench.diffusion.models.load_mini_sd`.

Weights (float16 safetensors) and model cards live in ``bench/foundation/weights/``; ``bench foundation
train | ship | eval`` remakes, exports and evaluates them (`bench.foundation.cli`).
"""
