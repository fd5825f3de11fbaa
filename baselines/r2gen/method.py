"""r2gen: R2Gen, the memory-driven Transformer report generator (Chen et al. 2020; thesis Tables 6.3 / 6.4), written
here (`model.R2GenModel`) and trained on the task's training images and report sections.

The thesis ran the public checkpoint (``model_mimic_cxr.pth``); ``checkpoint`` loads a state saved by this class
from a local folder instead of training (converting the official checkpoint's names is not done). Decoding: beam
search (R2Gen's paper: beam 3) or greedy.
"""
from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch

from bench.errors import FitSetError
from bench.interface import Capabilities, Condition, GeneratorBase, RunContext, Sample, derive_seed

from . import captioning


@dataclass(frozen=True)
class R2GenConfig:
    """R2Gen options (defaults: the paper's MIMIC-CXR settings where they apply)."""

    report_section: Literal["findings", "findings+impression"] = "findings"
    """Training text (the thesis' report tables use findings)."""
    threshold: int = 10
    """Minimum word count of the vocabulary (R2Gen MIMIC-CXR: 10)."""
    max_length: int = 100
    """Maximum report length in tokens (R2Gen MIMIC-CXR: 100)."""
    image_size: int = 224
    d_model: int = 512
    layers: int = 3
    heads: int = 8
    ffn: int = 512
    num_slots: int = 3
    dropout: float = 0.1
    epochs: int = 30
    batch_size: int = 16
    lr: float = 1e-4
    lr_step: int = 50
    """Epochs between learning-rate decays (R2Gen: 50)."""
    lr_gamma: float = 0.1
    beam: int = 3
    checkpoint: str | None = None
    """A folder saved by this baseline: load it instead of training."""


class R2Gen(GeneratorBase):
    """Reports for given images (the task's ``input=real``)."""

    capabilities: ClassVar[Capabilities] = Capabilities(accepts={"reference"}, returns={"report"},
                                                        requires={"reference"})
    Config = R2GenConfig
    version: ClassVar[str] = "1"
    generation_only: ClassVar[frozenset[str]] = frozenset({"beam"})

    def __init__(self, config: Any = None) -> None:
        super().__init__(config)
        self.vocab: captioning.WordVocab | None = None
        self.model: Any = None

    def build_model(self, vocab_size: int) -> torch.nn.Module:
        from .model import R2GenModel

        c = self.config
        return R2GenModel(vocab_size, c.d_model, c.layers, c.heads, c.ffn, c.num_slots, c.max_length, c.dropout)

    def _images(self, images: Sequence[torch.Tensor]) -> torch.Tensor:
        from bench.tasks.common import resize_image

        return torch.stack([resize_image(x[:1] if x.shape[0] == 3 else x, self.config.image_size) for x in images])

    @staticmethod
    def text_of(sample: Sample, section: str) -> str:
        findings, impression = sample.meta.get("findings"), sample.meta.get("impression")
        if findings is None and impression is None:
            return sample.report or ""
        return findings or "" if section == "findings" else " ".join(t for t in (findings, impression) if t)

    def fit(self, train: Sequence[Sample], ctx: RunContext) -> None:
        c = self.config
        if c.checkpoint:
            self.load(Path(c.checkpoint).expanduser())
            return
        pairs = [(s.image, self.text_of(s, c.report_section)) for s in (train[i] for i in range(len(train)))]
        pairs = [(im, t) for im, t in pairs if t and im is not None]
        if not pairs:
            raise FitSetError(f"{type(self).__name__}: no training sample has an image and a {c.report_section} text")
        texts = [t for _, t in pairs]
        self.vocab = captioning.WordVocab.build(texts, c.threshold)
        tokens = self.vocab.encode(texts, c.max_length)
        images = self._images([im for im, _ in pairs])
        torch.manual_seed(derive_seed(ctx.seed, 81))
        self.model = self.build_model(len(self.vocab))
        n = (len(images) + c.batch_size - 1) // c.batch_size
        losses = captioning.fit_captioner(self.model, images, tokens, c.epochs, c.batch_size, c.lr,
                                          derive_seed(ctx.seed, 82), ctx.progress(f"{type(self).__name__} fit", c.epochs * n),
                                          c.lr_step, c.lr_gamma)
        self.fit_log = {"loss_first": losses[0], "loss_last": sum(losses[-20:]) / len(losses[-20:]),
                        "vocab": len(self.vocab), "pairs": len(pairs)}

    def save(self, path: Path) -> None:
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in self.model.state_dict().items()}, str(path / "model.safetensors"))
        (path / "vocab.json").write_text(json.dumps(self.vocab.itos[4:]))
        (path / "fit.json").write_text(json.dumps({"config": asdict(self.config), **getattr(self, "fit_log", {})}))

    def load(self, path: Path) -> None:
        from safetensors.torch import load_file

        if not (path / "model.safetensors").is_file():
            raise FileNotFoundError(f"{type(self).__name__} checkpoint missing: {path / 'model.safetensors'}")
        self.vocab = captioning.WordVocab(json.loads((path / "vocab.json").read_text()))
        self.model = self.build_model(len(self.vocab))
        self.model.load_state_dict(load_file(str(path / "model.safetensors")))
        self.model.eval()

    def generate(self, conditions: Sequence[Condition], ctx: RunContext) -> Iterator[Sample]:
        c = self.config
        for start in range(0, len(conditions), 32):
            chunk = conditions[start:start + 32]
            ids = captioning.decode(self.model, self._images([cond.reference for cond in chunk]), c.max_length, c.beam)
            for seq in ids:
                yield Sample(report=self.vocab.decode(seq))
