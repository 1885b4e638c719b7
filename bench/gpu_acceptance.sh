#!/usr/bin/env bash
# GPU acceptance: real-size memory and speed of the Wan2.2 models on one GPU, with no network.
#
#   bench/gpu_acceptance.sh [--tiny] [--steps N] [--out DIR] [--fastest]
#                           [--case MODEL:WxHxFRAMES:STRATEGY]...
#
# Runs `wan bench` on the full-size random-weight variants (nothing to download; the weights are
# made on the GPU) for each case, then prints one table per case (measured figures with the
# planner's prediction in brackets) and writes DIR/acceptance.json, each run's JSON beside it
# (DIR: ./gpu-acceptance-DATE unless --out says).
# Default cases, sized for one 80 GB H100 in under 8 minutes (each has a time budget after which
# it starts no further strategy; the cheapest strategies run first):
#   TI2V-5B  at 1280x704, 121 frames: every strategy that fits
#   T2V-A14B at  832x480,  81 frames: every strategy that fits
#   T2V-A14B at 1280x720,  81 frames: the planner's choice
# --tiny runs the tiny variants instead (any CPU; what the test suite does, with small --case).
# --fastest also runs each case's planner choice with diffusers' fastest attention backend and
# compiled blocks (wan bench --attention-backend auto --compile, 4 more steps: each expert's first
# step compiles and is left out): s/step against the plain run above it. Not in the 8 minutes:
# compiling a 14B model's blocks may add a minute or more per case.
# Exit status: 0 all ran, 1 a strategy failed (the table says which and why), 2 bad arguments.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
OUT="gpu-acceptance-$(date -u +%Y%m%d-%H%M%S)"
STEPS=2
VARIANT=(--variant random)
CASES=()
BUDGETS=()
FASTEST=0

while [[ $# -gt 0 ]]; do
    case "$1" in
        --tiny) VARIANT=(--tiny); shift ;;
        --steps) STEPS="$2"; shift 2 ;;
        --out) OUT="$2"; shift 2 ;;
        --case) CASES+=("$2"); BUDGETS+=(""); shift 2 ;;
        --fastest) FASTEST=1; shift ;;
        -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
        *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
done
if [[ ${#CASES[@]} -eq 0 ]]; then
    CASES=(TI2V-5B:1280x704x121:all T2V-A14B:832x480x81:all T2V-A14B:1280x720x81:best)
    BUDGETS=(100 120 "")  # seconds per case after which no further strategy starts
fi

mkdir -p "$OUT"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
status=0
runs=()
for i in "${!CASES[@]}"; do
    IFS=: read -r model size strategy <<< "${CASES[$i]}"
    if [[ ! "$size" =~ ^([0-9]+)x([0-9]+)x([0-9]+)$ ]]; then
        echo "--case ${CASES[$i]}: write MODEL:WIDTHxHEIGHTxFRAMES:STRATEGY" >&2
        exit 2
    fi
    run="$OUT/$((i + 1))-$model-$size.json"
    budget=()
    [[ -n "${BUDGETS[$i]}" ]] && budget=(--time-budget "${BUDGETS[$i]}")
    echo "== $model ${BASH_REMATCH[1]}x${BASH_REMATCH[2]}, ${BASH_REMATCH[3]} frames, $STEPS steps, strategy $strategy" >&2
    code=0
    "$PYTHON" -m wan_desktop.cli bench --model "$model" "${VARIANT[@]}" \
        --resolution "${BASH_REMATCH[1]}x${BASH_REMATCH[2]}" --frames "${BASH_REMATCH[3]}" \
        --steps "$STEPS" --strategy "${strategy:-all}" --decode-once "${budget[@]}" \
        --json --out "$run" > /dev/null || code=$?
    if [[ $code -eq 2 || ! -f "$run" ]]; then
        echo "wan bench could not run $model at $size (exit $code)" >&2
        exit 2
    fi
    [[ $code -ne 0 ]] && status=1
    runs+=("$run")
    if [[ $FASTEST -eq 1 ]]; then
        fast="$OUT/$((i + 1))-$model-$size-fastest.json"
        echo "== the same, planner's choice, fastest attention + compiled blocks" >&2
        code=0
        "$PYTHON" -m wan_desktop.cli bench --model "$model" "${VARIANT[@]}" \
            --resolution "${BASH_REMATCH[1]}x${BASH_REMATCH[2]}" --frames "${BASH_REMATCH[3]}" \
            --steps "$((STEPS + 4))" --strategy best --decode-once --attention-backend auto --compile \
            --json --out "$fast" > /dev/null || code=$?
        if [[ $code -eq 2 || ! -f "$fast" ]]; then
            echo "wan bench could not run $model at $size with --compile (exit $code)" >&2
            exit 2
        fi
        [[ $code -ne 0 ]] && status=1
        runs+=("$fast")
    fi
done

"$PYTHON" -m wan_desktop.engine.bench.report "${runs[@]}" --out "$OUT/acceptance.json" || status=1
exit $status
