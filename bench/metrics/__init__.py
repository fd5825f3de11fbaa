"""Metrics of the thesis and papers, one module per family.

- `segmentation`: per-image Dice/IoU, poorly segmented subsets S_x.
- `classification`: weighted/macro P/R/F1, class-wise F1, (balanced) accuracy, AUROC.
- `stats`: paired t-test, bootstrap CI, relative and absolute gains.
- `image`: Frechet distance (any extractor), KID, SSIM/MS-SSIM, PSNR, LPIPS.
- `extractors`: loaders of the standard pretrained feature extractors from local files.
- `refstats`: cache of real-image feature statistics.
- `text`: BLEU-1..4, ROUGE-L.  `chexlabel`: rule-based CheXpert-style labeler and CE F1.
- `embedding`: CLIP-I, CLIP-T, DINO, CLIP-I-sync.  `contrast`: ITA and Fitzpatrick types.

Only the catalogue is imported here (no torch), so ``bench --help`` stays instant.
"""
from bench.metrics.catalogue import METRIC_INFO, MetricInfo, check_value, metric_info

__all__ = ["METRIC_INFO", "MetricInfo", "check_value", "metric_info"]
