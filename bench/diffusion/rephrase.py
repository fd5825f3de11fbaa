"""New inference DermPrompts written by a local chat LLM from existing ones (spec section 1.2, "Ours-DermPrompt").

Used by `bench.diffusion.derm_t2i.DermT2I` (``method.rephrase_model``; moved from ``methods/didgen``, issue 22).

The thesis has "Llama3 generating new prompts from the existing DermPrompt" with no template, model size or count;
the spec recommends Llama-3.2-3B-Instruct shown about 5 random existing DermPrompts of the same class (or split)
and asked for one new description in the same style under 77 tokens [I]. That is what `rephrase_captions` does,
with a transformers causal LM read from a local folder (``local_files_only``: nothing is downloaded).
"""
from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

SYSTEM = ("You write short descriptions of dermoscopic images. Write one new, plausible description in the same "
          "style as the examples, in one sentence of at most 60 words, and nothing else.")


def build_request(examples: Sequence[str]) -> str:
    """The user turn: the example DermPrompts, one per line, then the instruction."""
    lines = "\n".join(f"- {e}" for e in examples)
    return f"Examples:\n{lines}\nWrite one new description in the same style."


def clean_output(text: str) -> str:
    """One line: the first non-empty line of the reply, without a leading list marker or quotes."""
    for line in text.strip().splitlines():
        line = line.strip().lstrip("-*").strip().strip('"').strip()
        if line:
            return line
    return ""


def load_llm(model_dir: str | Path) -> tuple[Any, Any]:
    """Tokenizer and causal LM from a local folder; one clear error when it is missing."""
    from bench.errors import UserInputError

    folder = Path(model_dir).expanduser()
    if not folder.is_dir():
        raise UserInputError(f"method.rephrase_model: {folder} is not a folder (a local transformers chat model, e.g. "
                             f"save_pretrained of meta-llama/Llama-3.2-3B-Instruct; nothing is downloaded)")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(str(folder), local_files_only=True).eval()
    return tokenizer, model


def rephrase_captions(model_dir: str | Path, captions: Sequence[str], labels: Sequence[Any] | None,
                      n_examples: int = 5, count: int = 200, seed: int = 0, max_new_tokens: int = 77,
                      llm: tuple[Any, Any] | None = None) -> list[tuple[str, Any]]:
    """``count`` new DermPrompts per class of ``labels`` (or ``count`` in all when every label is None), each written
    from ``n_examples`` random captions of that class; returns (prompt, class) pairs. Sampling is seeded."""
    import torch

    if not captions:
        return []
    tokenizer, model = llm if llm is not None else load_llm(model_dir)
    labels = list(labels) if labels is not None and len(labels) == len(captions) else [None] * len(captions)
    groups: dict[Any, list[str]] = {}
    for caption, label in zip(captions, labels):
        groups.setdefault(label, []).append(caption)
    rng = random.Random(seed)
    out: list[tuple[str, Any]] = []
    for label in sorted(groups, key=lambda k: (k is None, str(k))):
        pool = groups[label]
        for k in range(count):
            examples = rng.sample(pool, min(n_examples, len(pool)))
            request = build_request(examples)
            if getattr(tokenizer, "chat_template", None):
                text = tokenizer.apply_chat_template([{"role": "system", "content": SYSTEM},
                                                      {"role": "user", "content": request}],
                                                     tokenize=False, add_generation_prompt=True)
            else:
                text = f"{SYSTEM}\n{request}\n"
            inputs = tokenizer(text, return_tensors="pt")
            torch.manual_seed(seed * 100003 + k)
            with torch.no_grad():
                ids = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=True, top_p=0.9,
                                     pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id)
            reply = clean_output(tokenizer.decode(ids[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True))
            if reply:
                out.append((reply, label))
    logger.info("DermPrompt: %d new inference prompts written by %s", len(out), model_dir)
    return out
