#!/bin/sh
# bf16 (MaxText's mixed precision) against float32 for a whole training step,
# with oneDNN's own bf16 matmul rate and BLIS's sgemm rate measured in the
# same run on this machine. Trainers alternate, ROUNDS times STEPS steps each;
# step times are medians over steps 2.. of every round (the machine is shared).
# Usage: tools/bench/bf16_vs_f32.sh [MODEL [BATCH [SEQ [ROUNDS [STEPS [REMAT]]]]]]
#        default: gpt2-124m 4 256 3 4 none   (run from the source root after building)
set -e
MODEL=${1:-gpt2-124m}; BATCH=${2:-4}; SEQ=${3:-256}; ROUNDS=${4:-3}; STEPS=${5:-4}; REMAT=${6:-none}
dir=$(mktemp -d); trap 'rm -rf "$dir"' EXIT
echo "CPU: $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1), $(nproc) CPUs here;" \
     "AMX-BF16 $(grep -q amx_bf16 /proc/cpuinfo && echo yes || echo no)," \
     "AVX512-BF16 $(grep -q avx512_bf16 /proc/cpuinfo && echo yes || echo no)"
# shellcheck disable=SC2046
tools/bench/gemm_rate.sh "$dir"
"$dir/gemm_rate" --bf16 1024 768 768 > "$dir/bf16_rate"
onednn=$(awk '/GFLOP/ {print $6}' "$dir/bf16_rate")
impl=$(sed -n 's/^bf16 matmul: //p' "$dir/bf16_rate")
blis=$("$dir/gemm_rate" 1024 768 768 | awk '/GFLOP/ {print $6}')
echo "oneDNN bf16 matmul 1024x768x768 (NN, median): $onednn GFLOP/s ($impl)"
echo "BLIS sgemm 1024x768x768 (NN, median): $blis GFLOP/s"
for dt in float32 bfloat16; do
    build/mtxc build configs/base.yml model_name="$MODEL" override_model_config=true per_device_batch_size="$BATCH" max_target_length="$SEQ" \
        remat_policy="$REMAT" dtype=$dt -o "$dir/$dt" > /dev/null
done
r=0
while [ $r -lt "$ROUNDS" ]; do
    for dt in float32 bfloat16; do
        "$dir/$dt" steps="$STEPS" log_period=100 metrics_file="$dir/$dt.$r.jsonl" > "$dir/$dt.log"
        grep -v '"step": 1,' "$dir/$dt.$r.jsonl" >> "$dir/$dt.jsonl"
    done
    r=$((r + 1))
done
grep "^bf16 matmuls" "$dir/bfloat16.log" || true
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
field() { sed -n "s|.*\"$2\": \([0-9.e+-]*\).*|\1|p" "$dir/$1.jsonl" | median; }
f32=$(field float32 perf/step_time_seconds); b16=$(field bfloat16 perf/step_time_seconds)
f32tf=$(field float32 perf/per_device_tflops_per_sec); b16tf=$(field bfloat16 perf/per_device_tflops_per_sec)
awk -v f="$f32" -v b="$b16" -v ft="$f32tf" -v bt="$b16tf" -v od="$onednn" -v bl="$blis" -v m="$MODEL" \
    -v tok=$((BATCH * SEQ)) -v n="$(wc -l < "$dir/float32.jsonl")" 'BEGIN {
    printf "%s, %d tokens per step, remat_policy '"$REMAT"', median of %d steps each:\n", m, tok, n
    printf "  float32:  %6.0f ms/step, %6.1f GFLOP/s = %3.0f%% of BLIS sgemm\n", f * 1000, ft * 1000, 100 * ft * 1000 / bl
    printf "  bfloat16: %6.0f ms/step, %6.1f GFLOP/s = %3.0f%% of oneDNN bf16 matmul\n", b * 1000, bt * 1000, 100 * bt * 1000 / od
    printf "  bf16 step %.2fx faster than float32\n", f / b }'
