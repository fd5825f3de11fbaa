import math

import pytest
from nltk.translate.bleu_score import corpus_bleu, sentence_bleu
from rouge_score import rouge_scorer

from bench.metrics.text import bleu_scores, rouge_l, text_scores, tokenize


def test_tokenize():
    assert tokenize("No effusion, or pneumothorax.") == ["no", "effusion", ",", "or", "pneumothorax", "."]
    assert tokenize("Heart's size: 12cm", keep_punctuation=False) == ["heart's", "size", "12cm"]
    assert tokenize("") == []


def test_bleu_hand_computed():
    # ref: the heart is normal (4 tokens); hyp: the heart is enlarged (4 tokens), BP = 1
    out = bleu_scores(["the heart is normal"], ["the heart is enlarged"])
    assert out["bleu1"] == pytest.approx(3 / 4)
    assert out["bleu2"] == pytest.approx(math.sqrt(3 / 4 * 2 / 3))
    assert out["bleu3"] == pytest.approx((3 / 4 * 2 / 3 * 1 / 2) ** (1 / 3))
    assert out["bleu4"] == pytest.approx(0.0, abs=1e-12)  # no 4-gram match, no smoothing (nltk returns ~1e-78)
    # brevity penalty: hyp of 2 tokens vs ref of 4 -> exp(1 - 4/2)
    assert bleu_scores(["the heart is normal"], ["the heart"])["bleu1"] == pytest.approx(math.exp(-1.0))


def test_bleu_is_corpus_level_against_nltk():
    refs = ["no acute cardiopulmonary process.", "the lungs are clear. heart size is normal.", "small left effusion."]
    hyps = ["no acute cardiopulmonary abnormality.", "lungs are clear. the heart is normal in size.", "left pleural effusion."]
    out = bleu_scores(refs, hyps)
    toks_r = [[tokenize(r)] for r in refs]
    toks_h = [tokenize(h) for h in hyps]
    for n in range(1, 5):
        assert out[f"bleu{n}"] == pytest.approx(corpus_bleu(toks_r, toks_h, weights=(1 / n,) * n), abs=1e-12)
    # corpus BLEU is not the mean of sentence BLEUs
    mean_sentence = sum(sentence_bleu(r, h, weights=(0.5, 0.5)) for r, h in zip(toks_r, toks_h)) / 3
    assert out["bleu2"] != pytest.approx(mean_sentence, abs=1e-6)


def test_identical_and_empty_reports():
    assert bleu_scores(["the heart is normal in size ."], ["the heart is normal in size ."]) == {f"bleu{n}": 1.0 for n in range(1, 5)}
    assert bleu_scores(["the heart is normal"], [""]) == {f"bleu{n}": 0.0 for n in range(1, 5)}
    assert rouge_l(["the heart is normal"], [""]) == 0.0
    with pytest.raises(ValueError):
        bleu_scores(["a"], ["a", "b"])


def test_rouge_l_against_rouge_score():
    refs = ["no pleural effusion or pneumothorax", "heart size is mildly enlarged"]
    hyps = ["no effusion or pneumothorax is seen", "the heart is enlarged"]
    scorer = rouge_scorer.RougeScorer(["rougeL"])
    expected = [scorer.score(r, h)["rougeL"].fmeasure for r, h in zip(refs, hyps)]
    assert rouge_l(refs, hyps) == pytest.approx(sum(expected) / 2, abs=1e-12)
    # hand: LCS("no pleural effusion or pneumothorax", "no effusion or pneumothorax is seen") = 4; P=4/6, R=4/5
    p, r = 4 / 6, 4 / 5
    assert rouge_l(refs[:1], hyps[:1]) == pytest.approx(2 * p * r / (p + r))
    assert set(text_scores(refs, hyps)) == {"bleu1", "bleu2", "bleu3", "bleu4", "rouge_l"}
