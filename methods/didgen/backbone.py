"""DiDGen's backbone loading and frozen placeholders: moved to `bench.diffusion.dermprompt` (shared with the
baselines); re-exported here."""
from bench.diffusion.dermprompt import add_frozen_placeholders, load_backbone  # noqa: F401
