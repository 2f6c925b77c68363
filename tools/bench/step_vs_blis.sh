#!/bin/sh
# Speed of a whole training step as a fraction of BLIS's own sgemm rate,
# both measured in this run on this machine (medians; the machine is shared).
# Usage: tools/bench/step_vs_blis.sh [MODEL [BATCH [SEQ [STEPS [REMAT]]]]]
#        default: gpt2-124m 4 256 5 none   (run from the source root after building)
# REMAT is remat_policy: none keeps every activation (the fastest step when it
# fits); MaxText's default, full, recomputes each layer's forward (+23% here).
set -e
MODEL=${1:-gpt2-124m}; BATCH=${2:-4}; SEQ=${3:-256}; STEPS=${4:-5}; REMAT=${5:-none}
dir=$(mktemp -d); trap 'rm -rf "$dir"' EXIT
tools/bench/gemm_rate.sh "$dir"
blis=$("$dir/gemm_rate" 1024 768 768 | awk '/GFLOP/ {print $6}')
echo "BLIS sgemm 1024x768x768 (NN, median): $blis GFLOP/s"
build/mtxc build configs/base.yml model_name="$MODEL" override_model_config=true per_device_batch_size="$BATCH" max_target_length="$SEQ" \
    remat_policy="$REMAT" dtype=float32 -o "$dir/trainer" > /dev/null
"$dir/trainer" steps="$STEPS" log_period=1 metrics_file="$dir/metrics.jsonl" > "$dir/log"
# Median step time over steps 2.. (the first touches fresh pages).
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
field() { grep -v '"step": 1,' "$dir/metrics.jsonl" | sed -n "s|.*\"$1\": \([0-9.e+-]*\).*|\1|p" | median; }
ms=$(field perf/step_time_seconds | awk '{print $1 * 1000}')
tflops=$(field perf/per_device_tflops_per_sec)
tokens=$((BATCH * SEQ))
awk -v ms="$ms" -v tf="$tflops" -v blis="$blis" -v tok="$tokens" -v m="$MODEL" 'BEGIN {
    printf "%s (%d tokens per step, remat_policy '"$REMAT"'): %.0f ms/step, %.0f tokens/s, %.1f GFLOP/s = %.0f%% of BLIS sgemm\n",
           m, tok, ms, tok / (ms / 1000), tf * 1000, 100 * tf * 1000 / blis }'
