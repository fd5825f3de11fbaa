"""Report-text metrics: corpus BLEU-1..4 and ROUGE-L (thesis chapter 6, Table 6.3).

- BLEU (research ch6 section 5.5): nltk ``corpus_bleu`` with one reference per
  hypothesis, uniform weights ``w_n = (1/n,)*n``, **no smoothing** (equivalent to
  pycocoevalcap's ``Bleu(4)`` used by R2Gen up to its 1e-9 epsilon). Tokenisation
  is our own regex (no ``word_tokenize``, which needs downloaded punkt data):
  lowercase, punctuation split off as separate tokens (``keep_punctuation=False``
  drops it), split on whitespace.
- ROUGE-L (section 5.6 option a): ``rouge_score`` ``rougeL`` F-measure (beta = 1),
  averaged over pairs; rouge-score applies its own tokeniser.
- METEOR is not provided: nltk's METEOR needs the WordNet corpus download.
"""
from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Sequence

import numpy as np

logger = logging.getLogger(__name__)

_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)?|[^\sa-z0-9]")


def tokenize(text: str, keep_punctuation: bool = True) -> list[str]:
    """Lowercase; words (letters/digits, inner apostrophe) and single punctuation marks as tokens.

    >>> tokenize("No effusion, or pneumothorax.")
    ['no', 'effusion', ',', 'or', 'pneumothorax', '.']
    """
    tokens = _TOKEN.findall((text or "").lower())
    if not keep_punctuation:
        tokens = [t for t in tokens if t[0].isalnum()]
    return tokens


def bleu_scores(references: Sequence[str], hypotheses: Sequence[str], keep_punctuation: bool = True) -> dict[str, float]:
    """Corpus BLEU-1..4 of generated reports against their references.

    Args:
        references: one reference report per hypothesis.
        hypotheses: generated reports, same length (an empty one contributes length 0).

    Returns:
        ``{"bleu1": ., "bleu2": ., "bleu3": ., "bleu4": .}`` in [0, 1]; an order with no
        matching n-gram scores ~0 (no smoothing; nltk substitutes the smallest float, giving ~1e-78).
    """
    from nltk.translate.bleu_score import corpus_bleu

    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references vs {len(hypotheses)} hypotheses")
    if not references:
        raise ValueError("no report pairs to score")
    refs = [[tokenize(r, keep_punctuation)] for r in references]
    hyps = [tokenize(h, keep_punctuation) for h in hypotheses]
    if sum(len(h) for h in hyps) == 0:
        return {f"bleu{n}": 0.0 for n in range(1, 5)}
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # nltk warns when an order has no match; the score is then 0
        for n in range(1, 5):
            out[f"bleu{n}"] = float(corpus_bleu(refs, hyps, weights=(1.0 / n,) * n))
    return out


def rouge_l(references: Sequence[str], hypotheses: Sequence[str], per_pair: bool = False) -> float | np.ndarray:
    """Mean ROUGE-L F-measure (rouge-score, beta = 1, no stemming) over pairs.

    Returns:
        the mean in [0, 1], or the per-pair array (N,) when ``per_pair``. An empty
        reference or hypothesis scores 0.
    """
    from rouge_score import rouge_scorer

    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references vs {len(hypotheses)} hypotheses")
    if not references:
        raise ValueError("no report pairs to score")
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    scores = np.array([scorer.score(r or "", h or "")["rougeL"].fmeasure for r, h in zip(references, hypotheses)])
    return scores if per_pair else float(scores.mean())


def text_scores(references: Sequence[str], hypotheses: Sequence[str]) -> dict[str, float]:
    """BLEU-1..4 and ROUGE-L together: ``bleu1..bleu4, rouge_l``."""
    out = bleu_scores(references, hypotheses)
    out["rouge_l"] = float(rouge_l(references, hypotheses))  # type: ignore[arg-type]
    return out
