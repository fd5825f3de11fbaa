"""cxr-repair-select: CXR-RePaiR-Select (Endo et al. 2021, ``rajpurkarlab/CXR-RePaiR``; thesis Table 6.3, whose
numbers are copied from that paper): sentence retrieval by CLIP image-text similarity, one sentence for an image
whose top sentence the labeler calls "No Finding", six sentences otherwise (``create_select.py`` combines the
CXR-RePaiR-1 and CXR-RePaiR-6 outputs this way). The retrieval machinery is the ``retrieval`` baseline's.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from baselines.retrieval.method import Retrieval, RetrievalConfig


@dataclass(frozen=True)
class CxrRepairSelectConfig(RetrievalConfig):
    """The retrieval options with CXR-RePaiR-Select's defaults: a sentence corpus, top-1 or top-6 sentences."""

    unit: Literal["report", "sentence"] = "sentence"
    topk: int = 1
    select_topk: int = 6


class CxrRepairSelect(Retrieval):
    """CXR-RePaiR-Select: one or six retrieved sentences, chosen by the labeled top-1 sentence."""

    Config = CxrRepairSelectConfig
    version: ClassVar[str] = "1"
    options_added_later: ClassVar[frozenset[str]] = frozenset()
