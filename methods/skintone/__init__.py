"""Skin-tone annotators of thesis chapter 5 (Table 5.1): ITA baselines, fine-tuned CNNs and stacked ensembles.

Each is a Generator for the ``skin-tone`` task: a condition's ``reference`` image in, its skin-tone group
(FST I-II / III-IV / V-VI) out as ``label``. See README.md for the decisions.
"""
from methods.skintone.cnn import VGG16, BaseCNN, DenseNet121, EfficientNetV2, MobileNetV2, ResNet18, ViTB16
from methods.skintone.common import Annotator, SkinToneConfig
from methods.skintone.ensemble import (Ensemble, EnsembleAdaBoost, EnsembleDT, EnsembleET, EnsembleGB, EnsembleLR,
                                       EnsembleRF, EnsembleSVM)
from methods.skintone.ita import Ita8Patch, ItaYCbCr

__all__ = ["Annotator", "SkinToneConfig", "ItaYCbCr", "Ita8Patch", "BaseCNN", "ResNet18", "VGG16", "DenseNet121",
           "EfficientNetV2", "MobileNetV2", "ViTB16", "Ensemble", "EnsembleLR", "EnsembleRF", "EnsembleSVM", "EnsembleDT",
           "EnsembleET", "EnsembleAdaBoost", "EnsembleGB"]
