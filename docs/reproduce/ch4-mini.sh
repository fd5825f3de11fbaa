#!/usr/bin/env bash
# Mini-profile twins of thesis Tables 4.1, 4.2, 4.5, 4.6 and 4.7 (chapter 4, DiDGen) on derm-mini.
# Usage: bash docs/reproduce/ch4-mini.sh [WORK_DIR]   (default bench-runs; then `bench table thesis-4.5 --profile mini`)
# Every command is resumable: rerunning skips finished stages. Runs are sequential on purpose: parallel torch jobs on
# a 2-core machine slow each other down 10x or more.
set -euo pipefail
WORK=${1:-bench-runs}
run() { bench run --profile mini --work-dir "$WORK" --no-progress "$@"; }

# Table 4.5 / 4.6 / 4.7 (seg-aug; S_1k twin = the mini split's 200 real pairs). DiDGen first: its generated masks
# condition the baselines, as in the thesis.
run --task seg-aug --method real-only
run --task seg-aug --method didgen
DIDGEN_RUN=$(ls -t "$WORK"/records/seg-aug__didgen__derm-mini__mini__s0__*.json | grep -v scores | head -1)
run --task seg-aug --method controlnet --set task.conditioning=generated-masks --set "task.mask_source=$DIDGEN_RUN"
run --task seg-aug --method didgen --set method.ca_guidance=false                    # Table 4.7 "without"
run --task seg-aug --method ip-adapter                                              # reference image + mask -> image

# Table 4.1 (derm-quality)
run --task derm-quality --method real-only
run --task derm-quality --method sd-finetune
run --task derm-quality --method dreambooth
run --task derm-quality --method didgen                                             # prefix prompt
run --task derm-quality --method didgen --set method.prompt=dermprompt
run --task derm-quality --method ip-adapter --set task.conditioning=masks           # mask-aware by default
run --task derm-quality --method controlnet --set task.conditioning=masks

# Table 4.2-4.4 (derm-cls; class prompts)
run --task derm-cls --method real-only
run --task derm-cls --method sd-finetune --set method.prompt=condition
run --task derm-cls --method dreambooth --set method.prompt=condition
run --task derm-cls --method didgen --set method.prompt=condition
run --task derm-cls --method ip-adapter --set task.conditioning=reference
run --task derm-cls --method controlnet --set task.conditioning=reference

for t in thesis-4.1 thesis-4.2 thesis-4.5 thesis-4.6 thesis-4.7; do bench table "$t" --profile mini --records "$WORK/records"; done
