#!/usr/bin/env bash
# What benchmarks/gpu.sh needs on a GPU machine that has torch and transformers but not all of our dependencies,
# no package registry and no data: made here, in BUNDLE (default .gpu-bundle/, ignored by git), carried there.
#   wheels/           the dependencies that machine lacks (pydantic, optuna and theirs), for Python 3.12
#   tokenizer/        a 16,000-token BPE of the corpus (the papers' vocabulary), for the BLiMP measurement
#   words_per_token   of that BPE on the corpus's training split, for the projection's 10M words in tokens
#   eval-blimp.tar.gz BLiMP (67 paradigms) from the data root's eval/
#   finetune/         a fresh llama-cpu-4m with its BPE and eval/glue_filtered/ RTE and MRPC, for benchmarks/finetune.py
#   data.tar.gz       corpus/ and the zero-shot suites' eval/ folders of the data root, for recipes/gpu-10m.yaml
# Usage: bash benchmarks/gpu_bundle.sh [BUNDLE]   (DATA_ROOT: default ../shared/data; .venv set up by `make setup`)
set -euo pipefail
B=${1:-.gpu-bundle}
DATA=${DATA_ROOT:-../shared/data}
PY=${PYTHON:-.venv/bin/python}
mkdir -p "$B/wheels"
# one version of each, the ones our own environment resolved
pins=$("$PY" -m pip freeze | grep -i -E '^(pydantic|pydantic[-_]core|annotated-types|typing-inspection|optuna|alembic|sqlalchemy|mako|colorlog)==')
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform manylinux_2_27_x86_64 --platform any -d "$B/wheels" $pins
if [ ! -f "$B/tokenizer/tokenizer.json" ]; then
    "$PY" -m babyllama.cli data prepare "$DATA/corpus" "$B/corpus"
    "$PY" -m babyllama.cli tokenizer train "$B/corpus" "$B/tokenizer" --vocab-size 16000
fi
"$PY" - "$B" <<'PY'
import sys
from pathlib import Path

from babyllama.tokenizer import load_tokenizer

b = Path(sys.argv[1])
tok = load_tokenizer(b / "tokenizer")
words = tokens = 0
for f in sorted((b / "corpus" / "train").glob("*")):
    lines = f.read_text(encoding="utf-8").splitlines()
    words += sum(len(x.split()) for x in lines)
    tokens += sum(len(ids) for ids in tok(lines, add_special_tokens=False)["input_ids"])
(b / "words_per_token").write_text(f"{words / tokens:.4f}\n")
print(f"words per token: {words / tokens:.4f} ({words:,} words, {tokens:,} tokens)")
PY
rm -rf "$B/corpus"
if [ ! -f "$B/finetune/model-llama-cpu-4m/config.json" ]; then
    "$PY" -c "import sys; sys.path.insert(0, 'benchmarks'); from pathlib import Path; from eval_blimp import model_for
model_for('llama-cpu-4m', Path(sys.argv[1]))" "$B/finetune"
    rm -rf "$B/finetune/corpus"
fi
mkdir -p "$B/finetune/eval/glue_filtered"
cp "$DATA"/eval/glue_filtered/{rte,mrpc}.{train,valid}.jsonl "$B/finetune/eval/glue_filtered/"
tar -czf "$B/eval-blimp.tar.gz" -C "$DATA/eval" blimp
tar -czf "$B/data.tar.gz" -C "$DATA" corpus eval/blimp_filtered eval/supplement_filtered eval/ewok_filtered \
    $(cd "$DATA" && ls eval/MANIFEST.sha256 eval/README.md 2>/dev/null)
du -sh "$B"/*
