#!/usr/bin/env bash
# Spark resource discovery script: the GPUs of this machine, as Spark wants them on standard output,
#   {"name": "gpu", "addresses": ["0", "1"]}
# (jobs/train.py names it in spark.driver.resource.gpu.discoveryScript for `train --processes N`).
# Indices come from nvidia-smi; no nvidia-smi, or no GPU, gives an empty list.
set -u
indices=$(nvidia-smi --query-gpu=index --format=csv,noheader 2>/dev/null | tr -d ' ' | grep -E '^[0-9]+$')
addresses=""
for i in $indices; do
  addresses="${addresses:+$addresses, }\"$i\""
done
echo "{\"name\": \"gpu\", \"addresses\": [$addresses]}"
