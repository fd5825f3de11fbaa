"""Agreement of the rule-based CheXpert-style labeler with IU X-ray MeSH tags.

Labels the 3,955 real IU X-ray reports shipped with torchxrayvision (FINDINGS +
IMPRESSION) and compares the labeler's positives (label == 1; uncertain counted as
negative, as the CE F1 does) with the reports' MeSH major tags mapped to CheXpert
observations (mapping: bench/metrics/chexlabel_iu.py). Prints per-label precision,
recall, F1 and support, plus a variant counting uncertain mentions as positive.

    python benchmarks/chexlabel_agreement.py
"""
from __future__ import annotations

import argparse
import time

import numpy as np


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--archive", default=None, help="NLMCXR_reports.tgz (default: the one inside torchxrayvision)")
    args = parser.parse_args(argv)

    from sklearn.metrics import precision_recall_fscore_support

    from bench.metrics.chexlabel import CATEGORIES, binarize, label_reports
    from bench.metrics.chexlabel_iu import load_iu_reports, mesh_to_labels

    t0 = time.perf_counter()
    reports = load_iu_reports(args.archive)
    mesh = np.stack([mesh_to_labels(r.major_mesh) for r in reports])
    labels = label_reports([r.text for r in reports])
    elapsed = time.perf_counter() - t0
    print(f"IU X-ray reports: {len(reports)} (labelled in {elapsed:.1f} s); empty texts: {sum(not r.text for r in reports)}")
    for title, uncertain_as in (("uncertain -> negative (CE F1 convention)", 0.0), ("uncertain -> positive", 1.0)):
        pred = binarize(labels, uncertain_as=uncertain_as)
        p, r, f, s = precision_recall_fscore_support(mesh, pred, average=None, zero_division=0)
        print(f"\nLabeler vs MeSH major tags, {title}")
        print(f"{'observation':28s} {'prec':>6s} {'recall':>6s} {'F1':>6s} {'support':>8s} {'predicted':>9s}")
        for i, cat in enumerate(CATEGORIES):
            print(f"{cat:28s} {p[i]:6.3f} {r[i]:6.3f} {f[i]:6.3f} {int(s[i]):8d} {int(pred[:, i].sum()):9d}")
        # MeSH "normal" is absent whenever any non-CheXpert finding (granuloma, scarring, spine...) was indexed,
        # so also compare No Finding with "no mapped CheXpert finding" on the MeSH side.
        no_mapped = (mesh[:, 1:13].sum(1) == 0).astype(int)
        p0, r0, f0, _ = precision_recall_fscore_support(no_mapped, pred[:, 0], average="binary", zero_division=0)
        print(f"{'No Finding (no mapped MeSH)':28s} {p0:6.3f} {r0:6.3f} {f0:6.3f} {int(no_mapped.sum()):8d} {int(pred[:, 0].sum()):9d}")
        mp, mr, mf, _ = precision_recall_fscore_support(mesh, pred, average="micro", zero_division=0)
        print(f"{'micro':28s} {mp:6.3f} {mr:6.3f} {mf:6.3f}")
        print(f"{'macro':28s} {p.mean():6.3f} {r.mean():6.3f} {f.mean():6.3f}")


if __name__ == "__main__":
    main()
