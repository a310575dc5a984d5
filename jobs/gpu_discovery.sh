#!/usr/bin/env bash
# Spark resource discovery script: the GPUs this process may use, as Spark wants them on stdout,
#   {"name": "gpu", "addresses": ["0", "1"]}
# (jobs/train.py names it in spark.driver.resource.gpu.discoveryScript for `train --processes N`).
# With CUDA_VISIBLE_DEVICES set, the addresses are 0..k-1 for its k entries: the indices torch uses,
# and what TorchDistributor maps back through that variable. Otherwise nvidia-smi's GPU indices; no
# nvidia-smi, or no GPU, gives an empty list.
set -u
if [ "${CUDA_VISIBLE_DEVICES+set}" = set ]; then
  indices=""
  k=0
  for _ in $(echo "$CUDA_VISIBLE_DEVICES" | tr ',' ' '); do
    indices="$indices $k"
    k=$((k + 1))
  done
else
  indices=$(nvidia-smi --query-gpu=index --format=csv,noheader 2>/dev/null | tr -d ' ' | grep -E '^[0-9]+$')
fi
addresses=""
for i in $indices; do
  addresses="${addresses:+$addresses, }\"$i\""
done
echo "{\"name\": \"gpu\", \"addresses\": [$addresses]}"
