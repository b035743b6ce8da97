#!/usr/bin/env bash
# The GPU check, from the repository root on the GPU machine. Its steps' timeouts add up to 20.5 minutes (tests 4.5,
# recipe 7, benchmarks 5, fine-tuning 4), more than one 10-minute call: STEPS picks what one call runs.
#   1. the gpu-marked tests (tests/integration/test_cuda.py: every stage on CUDA, the smoke recipe included);
#   1b. recipes/gpu-10m.yaml end to end on the bundle's data (its report, verdicts, tables and every stage's
#      metrics.json / eval.json copied to $OUT/gpu-10m as they are when it ends or times out);
#   2. benchmarks/gpu.py: one JSON line per measurement (peak, training MFU, cache building, cached vs plain
#      student, full BLiMP, the paper recipes' projected wall time);
#   3. benchmarks/finetune.py on the GPU: our fine-tuning path against the 2024 script's Trainer set-up (RTE, MRPC).
# STEPS (default "tests recipe bench finetune") picks which of them run.
# It reads BUNDLE (default .gpu-bundle/, made here by benchmarks/gpu_bundle.sh) for what that machine lacks, and
# writes its logs and gpu.jsonl under $OUT (default /tmp/babyllama-gpu).
#   bash benchmarks/gpu.sh [BUNDLE]
set -uo pipefail
B=${1:-.gpu-bundle}
STEPS=" ${STEPS:-tests recipe bench finetune} "
OUT=${OUT:-/tmp/babyllama-gpu}
mkdir -p "$OUT"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
SITE=/tmp/babyllama-site
if compgen -G "$B/wheels/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" \
        "$B"/wheels/*.whl || exit 1
fi
export PYTHONPATH="$PWD/src:$SITE${PYTHONPATH:+:$PYTHONPATH}"
python3 -c "import babyllama, pydantic, optuna, torch; assert torch.cuda.is_available(), 'no CUDA device'" || exit 1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"

tests_rc=0 recipe_rc=0 bench_rc=0 finetune_rc=0
if [[ $STEPS == *" tests "* ]]; then
start=$(date +%s)
timeout "${TESTS_TIMEOUT:-270}" python3 -m pytest -q -m gpu tests/integration/test_cuda.py -p no:cacheprovider \
    -W ignore::DeprecationWarning 2>&1 | tee "$OUT/gpu-tests.log" | tail -25
tests_rc=${PIPESTATUS[0]}
echo "gpu tests: exit $tests_rc in $(( $(date +%s) - start )) s"
fi

if [[ $STEPS == *" recipe "* ]]; then
if [ -f "$B/data.tar.gz" ]; then
    mkdir -p /tmp/babyllama-data && tar -xzf "$B/data.tar.gz" -C /tmp/babyllama-data
    start=$(date +%s)
    timeout "${RECIPE_TIMEOUT:-420}" python3 -m babyllama.cli run recipes/gpu-10m.yaml --data-root /tmp/babyllama-data \
        --run-dir /tmp/babyllama-gpu-10m 2>&1 | tee "$OUT/gpu-10m.log" | grep -E "^== |error" | tail -40
    recipe_rc=${PIPESTATUS[0]}
    echo "recipe gpu-10m: exit $recipe_rc in $(( $(date +%s) - start )) s"
    # what finished, even after a timeout: the report (when it got there) and each stage's results
    R=/tmp/babyllama-gpu-10m
    mkdir -p "$OUT/gpu-10m"
    cp -r "$R"/report.md "$R"/verdicts.json "$R"/tables "$OUT/gpu-10m/" 2>/dev/null
    for d in "$R"/stages/*/; do
        n=$(basename "$d"); mkdir -p "$OUT/gpu-10m/stages/$n"
        cp "$d"/metrics.json "$d"/eval.json "$d"/run_info.json "$OUT/gpu-10m/stages/$n/" 2>/dev/null
    done
else
    echo "recipe gpu-10m: no $B/data.tar.gz (run benchmarks/gpu_bundle.sh); skipped"; recipe_rc=1
fi
fi

if [[ $STEPS == *" bench "* ]]; then
args=()
if [ -f "$B/eval-blimp.tar.gz" ]; then
    mkdir -p /tmp/babyllama-eval && tar -xzf "$B/eval-blimp.tar.gz" -C /tmp/babyllama-eval
    args+=(--eval-root /tmp/babyllama-eval)
fi
[ -f "$B/tokenizer/tokenizer.json" ] && args+=(--tokenizer "$B/tokenizer")
[ -f "$B/words_per_token" ] && args+=(--words-per-token "$(cat "$B/words_per_token")")
start=$(date +%s)
timeout 300 python3 benchmarks/gpu.py "${args[@]}" 2> "$OUT/gpu-bench.err" | tee "$OUT/gpu.jsonl"
bench_rc=${PIPESTATUS[0]}
echo "benchmark: exit $bench_rc in $(( $(date +%s) - start )) s"
[ "$bench_rc" = 0 ] || tail -30 "$OUT/gpu-bench.err"
fi

if [[ $STEPS == *" finetune "* ]]; then
start=$(date +%s)
timeout "${FINETUNE_TIMEOUT:-240}" python3 benchmarks/finetune.py --device cuda --model "$B/finetune/model-llama-cpu-4m" \
    --eval-root "$B/finetune/eval" --seeds 12 13 14 15 --work /tmp/babyllama-finetune \
    2> "$OUT/finetune.err" | tee "$OUT/finetune.jsonl"
finetune_rc=${PIPESTATUS[0]}
echo "finetune benchmark: exit $finetune_rc in $(( $(date +%s) - start )) s"
[ "$finetune_rc" = 0 ] || tail -30 "$OUT/finetune.err"
fi
exit $(( tests_rc || recipe_rc || bench_rc || finetune_rc ))
