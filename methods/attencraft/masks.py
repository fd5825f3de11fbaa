"""Stage I of AttenCraft (Eq. 3.2-3.5) and its step sampler: the pure tensor functions live in
`bench.diffusion.concept_masks` (shared with the chapter-3 baselines, which report masks the same way)."""
from bench.diffusion.concept_masks import (RATIO_MODES, SELF_POWER_MODES, attention_score, delta_masks, minmax,
                                           propagate, sample_subset, sampling_ratios)

__all__ = ["RATIO_MODES", "SELF_POWER_MODES", "attention_score", "delta_masks", "minmax", "propagate",
           "sample_subset", "sampling_ratios"]
