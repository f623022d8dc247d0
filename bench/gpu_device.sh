#!/usr/bin/env bash
# The one device call of bench/gpu.py on a GPU machine that reaches no package index (run from the checkout root):
# installs the wheels `python -m bench.gpu_wheels` saved in .whl/ (carry it), then runs the bench, results in $OUT.
#   device run, carry [".whl"], timeout 590:  bash bench/gpu_device.sh
# The exit status is the bench's (124: it ran past its 540 s; the figures measured so far are in $OUT all the same).
set -euo pipefail
shopt -s nullglob
wheels=(.whl/*.whl)
if ((${#wheels[@]})); then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "${wheels[@]}"
fi
export PYTHONPATH="/tmp/site:$PWD" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 OMP_WAIT_POLICY=PASSIVE TQDM_DISABLE=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/device.txt"
python3 -c "import torch, diffusers, transformers; print(torch.__version__, diffusers.__version__, transformers.__version__)"
timeout 540 python3 -m bench.gpu --out "$OUT" 2>&1 | tee "$OUT/log.txt"
