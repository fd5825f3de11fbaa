"""Region-aware fine-tuning: moved to `bench.diffusion.t2i_finetune` (shared with the baselines); re-exported here
(``finetune`` is looked up here by DiDGen's fit, so tests may patch it on this module)."""
from bench.diffusion.t2i_finetune import (  # noqa: F401
    PriorData, minmax_maps, attention_loss, finetune, _with_prior_batch)
