#!/bin/sh
# attention: flash (the fused kernel) against dot_product (scores, softmax,
# values) for a whole training step, with BLIS's sgemm rate measured in the
# same run on this machine. Trainers alternate, ROUNDS times STEPS steps
# each; step times are medians over steps 2.. of every round (the machine is
# shared); peak RSS is the trainer's own report.
# Usage: tools/bench/flash_vs_dot.sh [MODEL [BATCH [SEQ [ROUNDS [STEPS [REMAT [DTYPE]]]]]]]
#        default: gpt2-124m 1 2048 3 3 none float32   (run from the source root after building)
set -e
MODEL=${1:-gpt2-124m}; BATCH=${2:-1}; SEQ=${3:-2048}; ROUNDS=${4:-3}; STEPS=${5:-3}; REMAT=${6:-none}
DTYPE=${7:-float32}
dir=$(mktemp -d); trap 'rm -rf "$dir"' EXIT
echo "CPU: $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1), $(nproc) CPUs here;" \
     "AVX-512 $(grep -q avx512f /proc/cpuinfo && echo yes || echo no); fused attention: 4x64 fmaf tiles (runtime/kernels/flash.c)"
# shellcheck disable=SC2046
tools/bench/gemm_rate.sh "$dir"
blis=$("$dir/gemm_rate" 1024 768 768 | awk '/GFLOP/ {print $6}')
echo "BLIS sgemm 1024x768x768 (NN, median): $blis GFLOP/s"
pos=""; [ "$SEQ" -gt 1024 ] && pos="trainable_position_size=$SEQ"   # gpt3 blocks learn positions
for a in dot_product flash; do
    # shellcheck disable=SC2086
    build/mtxc build configs/base.yml model_name="$MODEL" override_model_config=true per_device_batch_size="$BATCH" max_target_length="$SEQ" \
        remat_policy="$REMAT" dtype="$DTYPE" attention=$a $pos -o "$dir/$a" > /dev/null
done
r=0
while [ $r -lt "$ROUNDS" ]; do
    for a in dot_product flash; do
        "$dir/$a" steps="$STEPS" log_period=100 metrics_file="$dir/$a.$r.jsonl" > "$dir/$a.log"
        grep -v '"step": 1,' "$dir/$a.$r.jsonl" >> "$dir/$a.jsonl"
        sed -n 's/.*peak memory \([0-9.]* [MG]B\).*/\1/p' "$dir/$a.log" > "$dir/$a.rss"
    done
    r=$((r + 1))
done
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
field() { sed -n "s|.*\"$2\": \([0-9.e+-]*\).*|\1|p" "$dir/$1.jsonl" | median; }
dot=$(field dot_product perf/step_time_seconds); fl=$(field flash perf/step_time_seconds)
dottf=$(field dot_product perf/per_device_tflops_per_sec); fltf=$(field flash perf/per_device_tflops_per_sec)
awk -v d="$dot" -v f="$fl" -v dt="$dottf" -v ft="$fltf" -v bl="$blis" -v m="$MODEL" -v b="$BATCH" -v s="$SEQ" \
    -v dr="$(cat "$dir/dot_product.rss")" -v fr="$(cat "$dir/flash.rss")" -v n="$(wc -l < "$dir/flash.jsonl")" 'BEGIN {
    printf "%s, batch %d x %d tokens, '"$DTYPE"', remat_policy '"$REMAT"', median of %d steps each:\n", m, b, s, n
    printf "  dot_product: %6.0f ms/step, %6.1f GFLOP/s = %3.0f%% of BLIS sgemm, peak RSS %s\n", d * 1000, dt * 1000, 100 * dt * 1000 / bl, dr
    printf "  flash:       %6.0f ms/step, %6.1f GFLOP/s = %3.0f%% of BLIS sgemm, peak RSS %s\n", f * 1000, ft * 1000, 100 * ft * 1000 / bl, fr
    printf "  flash step %.2fx the speed of dot_product\n", d / f }'
