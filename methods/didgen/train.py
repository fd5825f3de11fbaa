"""Region-aware fine-tuning: moved to `bench.diffusion.t2i_finetune` (shared with the baselines); re-exported here
for DiDGen's own modules (`bench.diffusion.derm_t2i.DermT2I.fit` looks ``finetune`` up on `t2i_finetune`, so tests
patch it there)."""
from bench.diffusion.t2i_finetune import (  # noqa: F401
    PriorData, minmax_maps, attention_loss, finetune, _with_prior_batch)
