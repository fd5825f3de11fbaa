#!/usr/bin/env bash
# Mini-profile twins of thesis Tables 4.1-4.7 (chapter 4, DiDGen) on derm-mini.
# Usage: bash docs/reproduce/ch4-mini.sh [WORK_DIR]   (default bench-runs; then `bench table thesis-4.5 --profile mini`)
# Every command is resumable: rerunning skips finished stages. Runs are sequential on purpose: parallel torch jobs on
# a 2-core machine slow each other down 10x or more (two queues pinned one per core with `taskset -c 0|1` and
# `--threads 1` are fine). Measured 2026-12-05 at one thread per run: about 7.5 h of runs in all (3.7 h on two
# pinned queues); a seg-aug run 25-40 min at S_2.5k and 15-25 min at S_1k (the real-only arms are cached per
# scale), a derm-quality or derm-cls run 2-9 min. The records are in results/leaderboard/.
set -euo pipefail
WORK=${1:-bench-runs}
HERE=$(cd "$(dirname "$0")" && pwd)
SEG=$HERE/ch4-seg-mini.yaml   # Tables 4.5-4.7: train 520, four segmenters
CLS=$HERE/ch4-cls-mini.yaml   # Tables 4.2-4.4: four classifiers
run() { bench run --profile mini --work-dir "$WORK" --no-progress "$@"; }
# Both scales of Table 4.5 from one fit and one generation: S_2.5k twin (all 520 real pairs), then S_1k twin (200).
scales() { run "$@" --config "$SEG"; run "$@" --config "$SEG" --set task.n_real=200; }

# Tables 4.5 / 4.6 / 4.7 (seg-aug). DiDGen first: its generated masks condition the baselines, as in the thesis.
scales --task seg-aug --method real-only
scales --task seg-aug --method didgen
DIDGEN_RUN=$(ls -t "$WORK"/records/seg-aug__didgen__derm-mini__mini__s0__*.json | grep -v scores | head -1)
ON_DIDGEN=(--set task.conditioning=generated-masks --set "task.mask_source=$DIDGEN_RUN")
scales --task seg-aug --method controlnet "${ON_DIDGEN[@]}"
scales --task seg-aug --method pix2pixhd "${ON_DIDGEN[@]}"
scales --task seg-aug --method zestguide "${ON_DIDGEN[@]}"      # on DiDGen's fine-tuned UNet (shares its fit)
scales --task seg-aug --method attn-refocus "${ON_DIDGEN[@]}"
run --task seg-aug --method didgen --config "$SEG" --set method.ca_guidance=false   # Table 4.7 "without" (S_2.5k)
run --task seg-aug --method ip-adapter --config "$SEG" --set task.n_real=200       # reference image + mask -> image

# Table 4.1 (derm-quality)
run --task derm-quality --method real-only
for m in sl-stylegan pgan sd-finetune dreambooth didgen; do run --task derm-quality --method $m; done
run --task derm-quality --method didgen --set method.prompt=dermprompt
run --task derm-quality --method ip-adapter --set task.conditioning=masks           # mask-aware by default
run --task derm-quality --method controlnet --set task.conditioning=masks

# Tables 4.2-4.4 (derm-cls; class prompts for the text-to-image models, one GAN per class)
run --task derm-cls --method real-only --config "$CLS"
for m in sl-stylegan pgan; do run --task derm-cls --method $m --config "$CLS"; done
for m in sd-finetune dreambooth didgen; do run --task derm-cls --method $m --config "$CLS" --set method.prompt=condition; done
run --task derm-cls --method ip-adapter --config "$CLS" --set task.conditioning=reference
run --task derm-cls --method controlnet --config "$CLS" --set task.conditioning=mask           # class label + a class mask

for t in thesis-4.1 thesis-4.2 thesis-4.3 thesis-4.4 thesis-4.5 thesis-4.6 thesis-4.7; do
    bench table "$t" --profile mini --records "$WORK/records"
done
