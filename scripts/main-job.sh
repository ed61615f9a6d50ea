#!/usr/bin/env bash
# The README's first command: set up, then run a guarded training on generated data.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-env.sh
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
exec .venv/bin/python scripts/main_job.py "$@"
