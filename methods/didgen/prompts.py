"""DermPrompt (thesis ch. 4 section 4.3.2): moved to `bench.diffusion.dermprompt` (shared with the baselines);
re-exported here for DiDGen's own modules and older imports."""
from bench.diffusion.dermprompt import (LESION, PLAIN_PREFIX, PREFIX, SKIN, placeholder_positions,  # noqa: F401
                                        read_caption_file, read_prompt_file, strip_prefix, training_prompt,
                                        with_placeholders)
