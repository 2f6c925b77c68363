#!/bin/sh
# Decoding one sequence: the time to prefill a PROMPT-token prompt and the
# greedy tokens per second after it (medians of ROUNDS runs), from a
# checkpoint of a one-step run; next to BLIS's own sgemm rates in this run
# for the shapes that bound them: m = PROMPT rows for the prefill, m = 1 for
# a decode step (a GEMV-shaped GEMM, bound by memory bandwidth).
# Usage: tools/bench/decode.sh [MODEL [PROMPT [SEQ [ROUNDS [DTYPE]]]]]
#        default: gpt2-124m 256 1024 3 float32   (run from the source root after building)
set -e
MODEL=${1:-gpt2-124m}; PROMPT=${2:-256}; SEQ=${3:-1024}; ROUNDS=${4:-3}; DTYPE=${5:-float32}
dir=$(mktemp -d); trap 'rm -rf "$dir"' EXIT
echo "CPU: $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1), $(nproc) CPUs here"
# shellcheck disable=SC2046
tools/bench/gemm_rate.sh "$dir"
d=$(build/mtxc config configs/base.yml model_name="$MODEL" | sed -n 's/^emb_dim: \([0-9]*\).*/\1/p')
prefill_rate=$("$dir/gemm_rate" "$PROMPT" "$d" "$d" | awk '/GFLOP/ {print $6}')
gemv_rate=$("$dir/gemm_rate" 1 "$d" "$d" | awk '/GFLOP/ {print $6}')
echo "BLIS ${PROMPT}x${d}x${d}: $prefill_rate GFLOP/s (sgemm); 1x${d}x${d}: $gemv_rate GFLOP/s (gemv) (medians, mtx_sgemm)"
build/mtxc build configs/base.yml model_name="$MODEL" override_model_config=true per_device_batch_size=1 max_target_length="$SEQ" \
    max_prefill_predict_length="$PROMPT" dtype="$DTYPE" steps=1 -o "$dir/t" > /dev/null
(cd "$dir" && ./t run_name=r > train.log)
prompt=$(awk -v n="$PROMPT" 'BEGIN { for (i = 0; i < n; i++) printf "%d ", (i * 7919 + 13) % 1000 }')
r=0
while [ $r -lt "$ROUNDS" ]; do
    (cd "$dir" && ./t decode load_parameters_path=r/checkpoints/1 prompt="$prompt" > /dev/null 2>> decode.log)
    r=$((r + 1))
done
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
prefill=$(sed -n 's/.*prefill \([0-9.]*\) ms.*/\1/p' "$dir/decode.log" | median)
per=$(sed -n 's/.*, \([0-9.]*\) ms per token.*/\1/p' "$dir/decode.log" | median)
n=$(sed -n 's/.*greedy, \([0-9]*\) tokens.*/\1/p' "$dir/decode.log" | head -1)
params=$(build/mtxc compile-only configs/base.yml model_name="$MODEL" override_model_config=true max_target_length="$SEQ" --format json |
         sed -n 's/.*"param_count": \([0-9]*\).*/\1/p')
awk -v m="$MODEL" -v p="$PROMPT" -v pre="$prefill" -v per="$per" -v n="$n" -v params="$params" \
    -v pr="$prefill_rate" -v gr="$gemv_rate" 'BEGIN {
    pf = 2 * params * p / (pre / 1000) / 1e9; df = 2 * params / (per / 1000) / 1e9
    printf "%s, '"$DTYPE"', one sequence (%d parameters; FLOPs taken as 2 per parameter per token):\n", m, params
    printf "  prefill of %d tokens: %.1f ms (%.0f tokens/s, about %.0f GFLOP/s = %.0f%% of BLIS at m = %d)\n",
           p, pre, p / (pre / 1000), pf, 100 * pf / pr, p
    printf "  greedy decoding: %.2f ms per token, %.0f tokens/s over %d tokens (about %.1f GFLOP/s = %.0f%% of BLIS gemv at m = 1)\n",
           per, 1000 / per, n, df, 100 * df / gr }'
