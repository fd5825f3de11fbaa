"""CheXpert label prompts (bench/diffusion/cxr_prompts.py; moved from methods/cxr_irgen/vision.py, issue 22)."""
import pytest
import torch

from bench.diffusion.cxr_prompts import binary_labels, label_to_prompt

NAN = float("nan")


def _vec(**values):
    from bench.metrics.chexlabel import CATEGORIES

    return [values.get(c.replace(" ", "_"), NAN) for c in CATEGORIES]


def test_label_prompts_in_both_wordings():
    v = _vec(Cardiomegaly=1, Pleural_Effusion=1, Pneumothorax=0, Edema=-1)
    assert label_to_prompt(v, "code") == ("A chest X ray image with cardiomegaly and pleural effusion, "
                                          "without pneumothorax, and with uncertain edema")
    assert label_to_prompt(v, "thesis") == ("A chest X-Ray image with cardiomegaly, pleural effusion, "
                                            "without pneumothorax, and unclear about edema")
    assert label_to_prompt(_vec(), "code") == "A chest X ray image"
    assert label_to_prompt(_vec(Edema=1)) == "A chest X-Ray image with edema"
    binary = torch.zeros(14)
    binary[2] = 1
    assert label_to_prompt(binary_labels(binary), "code") == "A chest X ray image with cardiomegaly"


def test_bad_label_vectors_are_refused():
    with pytest.raises(ValueError, match="need a 14-label vector, got 3"):
        label_to_prompt([1.0, 0.0, 1.0])
    with pytest.raises(ValueError, match="wording must be 'thesis' or 'code'"):
        label_to_prompt(_vec(), "plain")


def test_cxr_irgen_keeps_the_names():
    from methods.cxr_irgen import vision

    assert vision.label_to_prompt is label_to_prompt and vision.binary_labels is binary_labels
