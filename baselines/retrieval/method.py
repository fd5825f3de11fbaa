"""retrieval: the training report whose text best matches the image under a CLIP model (CXR-RePaiR-style;
Endo et al. 2021, ``rajpurkarlab/CXR-RePaiR``; the thesis' CXR-RePaiR rows of Table 6.3).

Fit: the corpus is the training reports' ``corpus_section`` texts, whole (``unit=report``) or split into sentences
(``unit=sentence``, CXR-RePaiR's sentence corpus), distinct (case-insensitive, first spelling kept, training order),
embedded once by the CLIP text tower. Generate: the image's CLIP embedding, cosine similarity to every corpus text,
the ``topk`` most similar texts joined by a space are the report (CXR-RePaiR-k; ``run_test.py``). With
``select_topk`` > 0 (CXR-RePaiR-Select, ``create_select.py``): the top-1 report is labelled, and unless it is
"No Finding" it is replaced by the top-``select_topk`` report; ``cxr-repair-select`` registers that with its
defaults (``CxrRepairSelect``).
mini: mini-clip (stage 2 trained on cxr-mini images with their IU X-ray reports); paper: a local transformers
CLIPModel folder (CXR-RePaiR's CXR CLIP converted to transformers), nothing is downloaded.
"""
from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch

from bench.errors import FitSetError
from bench.interface import Capabilities, Condition, GeneratorBase, RunContext, Sample


@dataclass(frozen=True)
class RetrievalConfig:
    """Options of the retrieval report generator."""

    clip: str = "mini-clip"
    """``mini-clip`` or a local transformers CLIPModel folder (with its tokenizer and image size in the config)."""
    corpus_section: Literal["findings", "impression", "findings+impression"] = "findings"
    """Which section of the training reports forms the corpus (the task scores findings by default)."""
    unit: Literal["report", "sentence"] = "report"
    """Corpus entries: whole sections, or their sentences (CXR-RePaiR's sentence corpus)."""
    topk: int = 1
    """How many of the most similar corpus texts make one report (CXR-RePaiR-k)."""
    select_topk: int = 0
    """CXR-RePaiR-Select when > 0: reports whose top-1 text is not labelled "No Finding" take the top-``select_topk``
    texts instead (the authors' Select combines CXR-RePaiR-1 and -6: 6). The labeler is bench.metrics.chexlabel
    (the authors used CheXbert, which cannot be fetched here)."""
    batch_size: int = 64

    def __post_init__(self) -> None:
        if self.topk < 1 or self.select_topk < 0:
            raise ValueError(f"retrieval: topk must be >= 1 and select_topk >= 0 (got {self.topk}, {self.select_topk})")


class _Clip:
    """Unit-norm image and text embeddings of mini-clip or a CLIPModel folder."""

    def __init__(self, source: str) -> None:
        if source == "mini-clip":
            from bench.diffusion.models import load_mini_clip

            self.mini = load_mini_clip()
            self.model, self.tokenizer, self.size = self.mini.model, self.mini.tokenizer, self.mini.image_size
            self.mean = self.std = None
        else:
            from transformers import CLIPModel, CLIPTokenizer

            folder = Path(source).expanduser()
            if not folder.is_dir():
                raise FileNotFoundError(f"retrieval CLIP folder not found: {source} (a transformers CLIPModel folder, "
                                        "or 'mini-clip')")
            self.mini = None
            self.model = CLIPModel.from_pretrained(str(folder), local_files_only=True).eval()
            self.tokenizer = CLIPTokenizer.from_pretrained(str(folder), local_files_only=True)
            self.size = int(self.model.config.vision_config.image_size)
            from bench.metrics.extractors import CLIP_MEAN, CLIP_STD

            self.mean, self.std = torch.tensor(CLIP_MEAN)[:, None, None], torch.tensor(CLIP_STD)[:, None, None]

    def images(self, images: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            if self.mini is not None:
                return self.mini.image_embeddings(images).float()
            x = images.float().expand(-1, 3, -1, -1) if images.shape[1] == 1 else images.float()
            x = torch.nn.functional.interpolate(x, size=(self.size, self.size), mode="bicubic", antialias=True)
            emb = self.model.get_image_features(pixel_values=(x - self.mean) / self.std)
            return torch.nn.functional.normalize(emb.float(), dim=-1)

    def texts(self, texts: Sequence[str]) -> torch.Tensor:
        with torch.no_grad():
            if self.mini is not None:
                return self.mini.text_embeddings(list(texts)).float()
            tok = self.tokenizer(list(texts), padding=True, truncation=True, return_tensors="pt")
            return torch.nn.functional.normalize(self.model.get_text_features(**tok).float(), dim=-1)


def corpus_text(sample: Sample, section: str) -> str:
    """The training report's ``section`` text (the whole report when the sample has no sections)."""
    findings, impression = sample.meta.get("findings"), sample.meta.get("impression")
    if findings is None and impression is None:
        return sample.report or ""
    parts = {"findings": [findings], "impression": [impression], "findings+impression": [findings, impression]}[section]
    return " ".join(p for p in parts if p)


_MISSING_SPACE = re.compile(r"(?<=[a-z])\.(?=[A-Z])")  # IU X-ray reports: "Vascularity normal.Calcified ..."


def sentence_corpus(texts: Sequence[str]) -> list[str]:
    """The distinct sentences of ``texts`` (case-insensitive, first spelling kept, in order; no letter: dropped)."""
    from bench.metrics.chexlabel import split_sentences

    seen: set[str] = set()
    out = []
    for text in texts:
        for entry in split_sentences(_MISSING_SPACE.sub(". ", text)):
            if any(ch.isalpha() for ch in entry) and entry.lower() not in seen:
                seen.add(entry.lower())
                out.append(entry)
    return out


def select_reports(ranked: Sequence[Sequence[str]], topk: int, select_topk: int) -> list[str]:
    """Each image's report from its ranked corpus texts: the top ``topk`` joined, or with ``select_topk`` the
    CXR-RePaiR-Select rule (top-``topk`` report unless the labeler does not call it "No Finding")."""
    from bench.metrics.chexlabel import CATEGORIES, POSITIVE, label_reports

    reports = [" ".join(r[:topk]) for r in ranked]
    if not select_topk:
        return reports
    normal = label_reports(reports)[:, CATEGORIES.index("No Finding")] == POSITIVE
    return [rep if ok else " ".join(r[:select_topk]) for rep, ok, r in zip(reports, normal, ranked)]


class Retrieval(GeneratorBase):
    """Training report text(s) most similar to the image under a CLIP model."""

    capabilities: ClassVar[Capabilities] = Capabilities(accepts={"reference"}, returns={"report"},
                                                        requires={"reference"})
    Config = RetrievalConfig
    version: ClassVar[str] = "1"
    generation_only: ClassVar[frozenset[str]] = frozenset({"batch_size", "topk", "select_topk"})
    options_added_later: ClassVar[frozenset[str]] = frozenset({"unit", "topk", "select_topk"})

    def __init__(self, config: Any = None) -> None:
        super().__init__(config)
        self.corpus: list[str] = []
        self.embeddings: torch.Tensor | None = None
        self.clip: _Clip | None = None

    def _clip(self) -> _Clip:
        if self.clip is None:
            self.clip = _Clip(self.config.clip)
        return self.clip

    def fit(self, train: Sequence[Sample], ctx: RunContext) -> None:
        c = self.config
        texts = [corpus_text(train[i], c.corpus_section) for i in range(len(train))]
        self.corpus = list(dict.fromkeys(t for t in texts if t)) if c.unit == "report" else sentence_corpus(texts)
        if not self.corpus:
            raise FitSetError(f"retrieval: no training report has a {c.corpus_section} text")
        clip, bs = self._clip(), self.config.batch_size
        self.embeddings = torch.cat([clip.texts(self.corpus[i:i + bs]) for i in range(0, len(self.corpus), bs)])

    def save(self, path: Path) -> None:
        from safetensors.torch import save_file

        (path / "corpus.json").write_text(json.dumps(self.corpus))
        save_file({"embeddings": self.embeddings.contiguous()}, str(path / "embeddings.safetensors"))

    def load(self, path: Path) -> None:
        from safetensors.torch import load_file

        self.corpus = json.loads((path / "corpus.json").read_text())
        self.embeddings = load_file(str(path / "embeddings.safetensors"))["embeddings"]

    def generate(self, conditions: Sequence[Condition], ctx: RunContext) -> Iterator[Sample]:
        clip, bs = self._clip(), self.config.batch_size
        depth = min(max(self.config.topk, self.config.select_topk), len(self.corpus))
        for start in range(0, len(conditions), bs):
            chunk = conditions[start:start + bs]
            emb = clip.images(torch.stack([c.reference if c.reference.shape[0] == 3 else c.reference.expand(3, -1, -1)
                                           for c in chunk]))
            order = (emb @ self.embeddings.T).topk(depth, dim=1).indices.tolist()
            ranked = [[self.corpus[j] for j in row] for row in order]
            for report in select_reports(ranked, self.config.topk, self.config.select_topk):
                yield Sample(report=report)


@dataclass(frozen=True)
class CxrRepairSelectConfig(RetrievalConfig):
    """The retrieval options with CXR-RePaiR-Select's defaults: a sentence corpus, top-1 or top-6 sentences."""

    unit: Literal["report", "sentence"] = "sentence"
    topk: int = 1
    select_topk: int = 6


class CxrRepairSelect(Retrieval):
    """CXR-RePaiR-Select (``cxr-repair-select``; Endo et al. 2021, thesis Table 6.3): sentence retrieval, one
    sentence for an image whose top sentence the labeler calls "No Finding", six otherwise (the authors'
    ``create_select.py`` combines their CXR-RePaiR-1 and CXR-RePaiR-6 outputs this way)."""

    Config = CxrRepairSelectConfig
    version: ClassVar[str] = "1"
    options_added_later: ClassVar[frozenset[str]] = frozenset()
