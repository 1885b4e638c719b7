#!/usr/bin/env bash
# Lint, type-check and run the whole test suite, offline. Run scripts/setup.sh --dev first.
# Extra arguments go to pytest (e.g. scripts/test.sh -k store -x).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
export QT_QPA_PLATFORM=offscreen HF_HUB_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1 TOKENIZERS_PARALLELISM=false
unset WAN_DEV_MODE MODELS_ROOT WAN_MODELS_MANIFEST WAN_LOCAL_MIRROR

echo "== ruff format"
ruff format --check .
echo "== ruff lint"
ruff check .
echo "== mypy"
mypy
echo "== pytest"
exec python -m pytest "$@"
