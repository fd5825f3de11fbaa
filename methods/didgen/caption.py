"""DermPrompt captions (thesis section 4.3.2, spec ``research/ch4_didgen.md`` section 1.2): ``bench derm caption``.

Writes the caption file DiDGen, SD-Finetune and DreamBooth read with ``method.caption_file``
(`methods.didgen.prompts.read_caption_file`): a UTF-8 CSV with the header ``id,caption``, one row per image,
``id`` the dataset's sample id (``Sample.meta["id"]``, e.g. ``ISIC_0000000``) and ``caption`` one line of text
without the DermPrompt prefix. Two sources:

* a local vision-language model folder (``--model DIR``; transformers ``AutoProcessor`` +
  ``AutoModelForImageTextToText``, ``local_files_only``: nothing is downloaded). Processors with a chat template
  (Llama-3.2-Vision, LLaVA, ...) get one user turn ``[image, question]``, as the thesis's ``llama_annotation.py``;
  captioners without one (BLIP) get the question as the caption's text prefix, or nothing when no question is
  given. The decoded text loses the echoed prompt (the thesis's script kept it, spec section 9 item 7) and is
  folded onto one line.
* ``--from-attributes``: the ground-truth attribute captions a procedural dataset knows (derm-mini's
  ``Sample.prompt``), the deterministic stand-in for the VLM.

Not done here: the thesis's second step (Llama-3.2-3B rephrasing to one sentence of < 77 tokens); the Stable
Diffusion tokenizer truncates longer captions at 77 tokens.
"""
from __future__ import annotations

import csv
import logging
import os
import re
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import typer

from bench.store import new_file_mode

logger = logging.getLogger(__name__)

DERMPROMPT_QUESTION = ("This is an dermoscopic image of skin lesion, describe the shape, size, color of the lesion, "
                       "the position of the lesion in the image, the color of the skin, and other element on the "
                       "image if there is any. ")
"""The thesis's captioning instruction, verbatim (``llama_annotation.py``): lesion shape, size, colour and position;
skin colour; hair and other artificial markers."""
CAPTION_COLUMNS = ("id", "caption")
"""Header of a caption file, as `methods.didgen.prompts.read_caption_file` reads it."""


class CaptionError(ValueError):
    """A user error of ``bench derm caption`` (one line saying what to fix)."""


@dataclass
class Captioner:
    """A loaded vision-language model.

    Attributes:
        processor: the folder's ``AutoProcessor`` (image processor + tokenizer).
        model: its ``AutoModelForImageTextToText`` model, in eval mode.
        chat: True when the processor has a chat template (instruction-following VLM).
    """

    processor: Any
    model: Any
    chat: bool


def load_captioner(model_dir: str | Path, device: str = "cpu") -> Captioner:
    """Load a transformers image-to-text model from a local folder (``save_pretrained`` layout).

    Raises:
        CaptionError: the folder does not exist or holds no ``config.json``.
    """
    from transformers import AutoModelForImageTextToText, AutoProcessor

    folder = Path(model_dir).expanduser()
    if not (folder / "config.json").is_file():
        raise CaptionError(f"no vision-language model at {folder}: put a transformers image-to-text model folder there "
                           "(save_pretrained of e.g. Salesforce/blip-image-captioning-base or "
                           "meta-llama/Llama-3.2-11B-Vision-Instruct: config.json, weights, processor files)")
    processor = AutoProcessor.from_pretrained(str(folder), local_files_only=True)
    model = AutoModelForImageTextToText.from_pretrained(str(folder), local_files_only=True).to(device).eval()
    chat = bool(getattr(processor, "chat_template", None))
    if chat and getattr(processor, "tokenizer", None) is not None:
        processor.tokenizer.padding_side = "left"  # decoder-only generation continues after the prompt
    return Captioner(processor, model, chat)


def clean_caption(text: str, prompt: str | None = None, chat_header: bool = False) -> str:
    """One line of caption, whitespace folded, without the echoed ``prompt`` (when the text starts with it,
    case-insensitively), without everything up to the last ``assistant`` / ``ASSISTANT:`` turn header when
    ``chat_header``, and without a leading DermPrompt prefix."""
    from .prompts import strip_prefix

    text = " ".join(text.split())
    if prompt:
        head = " ".join(prompt.split())
        if text.lower().startswith(head.lower()):
            text = text[len(head):]
    if chat_header:
        text = re.split(r"(?i)\bassistant\b:?", text)[-1]
    return strip_prefix(text.strip())


def token_budget(config: Any, prompt_len: int, requested: int) -> int:
    """``requested`` new tokens, capped so that prompt + caption fit the text model's position table (a BLIP
    text decoder has 512 positions; generating past them fails)."""
    text_config = getattr(config, "text_config", None) or config
    limit = getattr(text_config, "max_position_embeddings", None)
    if limit is None or prompt_len + requested <= limit:
        return requested
    logger.warning("max_new_tokens %d capped to %d: the text model has %d positions", requested,
                   max(1, limit - prompt_len), limit)
    return max(1, limit - prompt_len)


def _to_pil(image: Any) -> Any:
    """(C, H, W) float tensor in [0, 1] -> RGB PIL image."""
    from PIL import Image

    array = (image.clamp(0, 1) * 255).round().byte()
    if array.shape[0] == 1:
        array = array.expand(3, -1, -1)
    return Image.fromarray(array.permute(1, 2, 0).contiguous().numpy(), mode="RGB")


def caption_images(captioner: Captioner, images: Sequence[Any], question: str | None = None,
                   max_new_tokens: int = 200, seed: int = 0) -> list[str]:
    """Captions of one batch of images.

    Args:
        captioner: a `load_captioner` result.
        images: (3, H, W) float tensors in [0, 1] (any size; the processor resizes).
        question: the instruction (chat models) or caption prefix (captioners); None: `DERMPROMPT_QUESTION` for
            chat models, no text for captioners.
        max_new_tokens: generation budget (thesis: 200).
        seed: torch seed set before generating (matters only if the model's generation config samples).

    Returns:
        one cleaned caption per image.
    """
    import torch

    proc, model = captioner.processor, captioner.model
    pil = [_to_pil(im) for im in images]
    if captioner.chat:
        text = question if question is not None else DERMPROMPT_QUESTION
        turn = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]}]
        prompt = proc.apply_chat_template(turn, add_generation_prompt=True)
        inputs = proc(images=pil, text=[prompt] * len(pil), return_tensors="pt", padding=True)
    elif question:
        inputs = proc(images=pil, text=[question] * len(pil), return_tensors="pt", padding=True)
    else:
        inputs = proc(images=pil, return_tensors="pt")
    inputs = inputs.to(model.device)
    prompt_len = inputs["input_ids"].shape[1] if "input_ids" in inputs else 1
    torch.manual_seed(seed)
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=token_budget(model.config, prompt_len, max_new_tokens))
    prompt_ids = inputs.get("input_ids")
    sliced = (prompt_ids is not None and out.shape[1] > prompt_ids.shape[1]
              and torch.equal(out[:, :prompt_ids.shape[1]], prompt_ids))
    if sliced:
        out = out[:, prompt_ids.shape[1]:]  # decoder-only models return the prompt first
    decoded = proc.batch_decode(out, skip_special_tokens=True)
    echo = None if captioner.chat else question
    return [clean_caption(t, echo, chat_header=captioner.chat and not sliced) for t in decoded]


def write_caption_file(path: str | Path, rows: Iterable[tuple[str, str]]) -> int:
    """Write ``(id, caption)`` rows as a caption CSV atomically (a temporary file in the same folder, then a rename).

    Returns:
        the number of rows written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    count = 0
    try:
        os.fchmod(fd, new_file_mode())  # an ordinary file's mode, not mkstemp's 0600
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(CAPTION_COLUMNS)
            for sample_id, caption in rows:
                writer.writerow((sample_id, " ".join(str(caption).split())))
                count += 1
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return count


def attribute_captions(samples: Sequence[Any]) -> list[tuple[str, str]]:
    """``(id, caption)`` from samples that carry their ground-truth caption (``Sample.prompt``), prefix stripped.

    Raises:
        CaptionError: a sample has no ``prompt``.
    """
    from .prompts import strip_prefix

    rows = []
    for s in samples:
        if not s.prompt:
            raise CaptionError(f"sample {s.meta.get('id')} has no attribute caption (Sample.prompt); --from-attributes "
                               "needs a procedural dataset such as derm-mini")
        rows.append((str(s.meta["id"]), strip_prefix(s.prompt)))
    return rows


def load_split(dataset: str, split: str, data_root: Path | None, limit: int | None = None) -> Sequence[Any]:
    """The samples of ``dataset``'s ``split`` at native size (the first ``limit``), loaded lazily."""
    from bench.interface import RunContext
    from bench.tasks.common import open_dataset

    samples = open_dataset(dataset, {}, None, RunContext(data_root=data_root)).load(split)
    if limit is None or limit >= len(samples):
        return samples
    return samples.subset(range(limit))  # lazy: images are read batch by batch


def caption_split(samples: Sequence[Any], captioner: Captioner, question: str | None = None, batch_size: int = 4,
                  max_new_tokens: int = 200, seed: int = 0, advance: Any = None) -> list[tuple[str, str]]:
    """``(id, caption)`` for every sample, captioned in batches by ``captioner``."""
    rows: list[tuple[str, str]] = []
    for start in range(0, len(samples), batch_size):
        batch = samples[start:start + batch_size]
        texts = caption_images(captioner, [s.image for s in batch], question, max_new_tokens, seed + start)
        rows.extend((str(s.meta["id"]), t) for s, t in zip(batch, texts))
        if advance is not None:
            advance(len(batch))
    return rows


# -- CLI: mounted by bench/cli.py as ``bench derm`` ---------------------------------------------------------------
derm_app = typer.Typer(help="Dermoscopy helpers (thesis ch. 4): DermPrompt caption files.", no_args_is_help=True,
                       add_completion=False)


@derm_app.command("caption", epilog="""Examples:\n
  bench derm caption --dataset derm-mini --from-attributes --out captions.csv\n
  bench derm caption --dataset isic2018-task1 --data-root ~/data --model ~/models/blip-large --out isic-captions.csv\n
  bench derm caption --dataset isic2018-task1 --data-root ~/data --model ~/models/Llama-3.2-11B-Vision-Instruct --device cuda --limit 200 --out sample.csv""")
def caption_command(
    out: Path = typer.Option(..., "--out", "-o", help="CSV to write (columns id, caption; method.caption_file)."),
    dataset: str = typer.Option("isic2018-task1", "--dataset", help="Dataset id (bench data list)."),
    data_root: Optional[Path] = typer.Option(None, "--data-root", help="Folder holding the real datasets."),
    split: str = typer.Option("train", help="Split to caption."),
    model: Optional[Path] = typer.Option(None, "--model", help="Local transformers image-to-text model folder."),
    from_attributes: bool = typer.Option(False, "--from-attributes",
                                         help="Write the dataset's ground-truth attribute captions (derm-mini)."),
    question: Optional[str] = typer.Option(None, "--question", help="Instruction / caption prefix (default: the "
                                           "thesis's DermPrompt instruction for chat models, none for captioners)."),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Caption only the first N samples."),
    batch_size: int = typer.Option(4, "--batch-size", min=1, help="Images per generate call (thesis: 4)."),
    max_new_tokens: int = typer.Option(200, "--max-new-tokens", min=1, help="Generation budget (thesis: 200)."),
    device: str = typer.Option("cpu", help="cpu | cuda[:N]."),
    seed: int = typer.Option(0, help="Torch seed (only used if the model's generation config samples)."),
) -> None:
    """Write a DermPrompt caption file (id, caption) for a dataset split, from a local VLM or ground truth."""
    from bench.data.base import DataError

    if (model is None) == (not from_attributes):
        _fail("give exactly one of --model DIR and --from-attributes")
    if data_root is not None and not data_root.is_dir():
        _fail(f"--data-root {data_root}: no such folder")
    if model is not None and not (model.expanduser() / "config.json").is_file():
        _fail(f"--model {model}: no vision-language model there (a transformers image-to-text folder with "
              "config.json, weights and processor files, written by save_pretrained)")
    try:
        samples = load_split(dataset, split, data_root, limit)
        if from_attributes:
            rows = attribute_captions(samples)
        else:
            captioner = load_captioner(model, device)
            logger.info("captioning %d %s/%s images with %s (%s)", len(samples), dataset, split, model,
                        "chat" if captioner.chat else "captioner")
            rows = caption_split(samples, captioner, question, batch_size, max_new_tokens, seed)
    except (CaptionError, DataError, KeyError) as exc:
        _fail(str(exc).strip("'\""))
        return
    n = write_caption_file(out, rows)
    typer.echo(f"{n} captions -> {out}")


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)
