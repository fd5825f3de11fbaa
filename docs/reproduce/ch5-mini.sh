#!/usr/bin/env bash
# Mini-profile twins of thesis Tables 5.1-5.5 (chapter 5: low-contrast bias) on derm-mini.
# Usage: bash docs/reproduce/ch5-mini.sh [WORK_DIR]   (default bench-runs)
# Every command is resumable: rerunning skips finished stages. The pretrained segmenters are trained once (cached
# in WORK_DIR/cache) and shared by every arm. Runs are sequential on purpose: parallel torch jobs on a 2-core machine
# slow each other down 10x or more.
set -euo pipefail
WORK=${1:-bench-runs}
run() { bench run --profile mini --work-dir "$WORK" --no-progress "$@"; }

# Tables 5.3 / 5.2 (the "Pretrained" rows first: real-only generates nothing)
run --task lowcontrast --method real-only
run --task lowcontrast --method real-random          # Training Sample (Random)
run --task lowcontrast --method real-lowcontrast     # Training Sample (Target)
run --task lowcontrast --method controlnet
run --task lowcontrast --method ip-adapter           # mask_input=controlnet (see baselines/ip_adapter/README.md)
run --task lowcontrast --method controlnet-styleid
run --task lowcontrast --method dualbranch
# Table 5.5: without layout guidance (L_CA and L_SA dropped at inference; the fit is shared)
run --task lowcontrast --method dualbranch --set method.ca_guidance=false --set method.sa_guidance=false

# Table 5.1 (skin-tone annotation; derm-mini's true skin ITA gives the groups)
for m in ita-ycbcr ita-8patch resnet18 vgg16 densenet121 efficientnet-v2 mobilenet-v2 vit-b16 \
         ensemble-lr ensemble-rf ensemble-svm ensemble-dt ensemble-et ensemble-adaboost ensemble-gb; do
    run --task skin-tone --method "$m"
done

for t in thesis-5.1 thesis-5.2 thesis-5.3 thesis-5.5; do bench table "$t" --profile mini --records "$WORK/records"; done
# Bias analysis (figures and tests) of the pretrained segmenters:
bench analyze bias --run "$(ls -t "$WORK"/records/lowcontrast__real-only__*.json | grep -v scores | head -1)" --work-dir "$WORK"
