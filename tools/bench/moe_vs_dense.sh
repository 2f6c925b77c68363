#!/bin/sh
# A mixture-of-experts step against a dense step with the same active
# parameters, each as a fraction of BLIS's own sgemm rate, all measured in
# this run (medians over alternating rounds; the machine is shared).
# Usage: tools/bench/moe_vs_dense.sh [ROUNDS [STEPS [BATCH [SEQ [DTYPE]]]]]
#        default: 3 rounds of 5 steps, batch 4 x 256, float32 (run from the source root after building)
# Dense: llama-125m (emb 768, 12 layers, SwiGLU 2048 wide). MoE: the same
# with decoder_block mixtral, 8 experts 1024 wide, 2 per token, so each
# token's MLP is 2 x 1024 = 2048 wide as the dense one's (plus an 8-wide gate).
# remat_policy none. float32: against BLIS's sgemm rate; bfloat16: against
# oneDNN's bf16 matmul rate (the experts' GEMMs are oneDNN's ragged plans).
set -e
ROUNDS=${1:-3}; STEPS=${2:-5}; BATCH=${3:-4}; SEQ=${4:-256}; DTYPE=${5:-float32}
case "$DTYPE" in float32) base="BLIS sgemm"; rate_flag="" ;; bfloat16) base="oneDNN bf16 matmul"; rate_flag=--bf16 ;;
    *) echo "moe_vs_dense.sh: DTYPE must be float32 or bfloat16, not '$DTYPE'" >&2; exit 2 ;; esac
dir=$(mktemp -d); trap 'rm -rf "$dir"' EXIT
tools/bench/gemm_rate.sh "$dir"
echo "CPU: $(sed -n 's/^model name[^:]*: //p' /proc/cpuinfo | head -1), $(nproc) CPUs; $DTYPE GEMMs," \
     "the experts' one GEMM per expert over its rows"
common="model_name=llama-125m override_model_config=true per_device_batch_size=$BATCH max_target_length=$SEQ"
common="$common remat_policy=none dtype=$DTYPE"
build/mtxc build configs/base.yml $common -o "$dir/dense" > /dev/null
build/mtxc build configs/base.yml $common decoder_block=mixtral num_experts=8 num_experts_per_tok=2 base_mlp_dim=1024 \
    -o "$dir/moe" > /dev/null
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
for r in $(seq "$ROUNDS"); do
    # shellcheck disable=SC2086
    "$dir/gemm_rate" $rate_flag 1024 768 768 | awk '/GFLOP/ {print $6}' >> "$dir/blis"
    for m in dense moe; do
        "$dir/$m" steps="$STEPS" log_period=1000 metrics_file="$dir/$m.$r.jsonl" > "$dir/$m.log"
        # steps 2..: the first touches fresh pages
        grep -v '"step": 1,' "$dir/$m.$r.jsonl" | sed -n 's|.*"perf/step_time_seconds": \([0-9.e+-]*\).*|\1|p' >> "$dir/$m.ms"
        grep -v '"step": 1,' "$dir/$m.$r.jsonl" | sed -n 's|.*"perf/per_device_tflops_per_sec": \([0-9.e+-]*\).*|\1|p' >> "$dir/$m.tf"
    done
done
blis=$(median < "$dir/blis")
echo "$base 1024x768x768 (NN), median of $ROUNDS: $blis GFLOP/s"
grep "^bf16 matmuls" "$dir/moe.log" || true
for m in dense moe; do
    ms=$(median < "$dir/$m.ms"); tf=$(median < "$dir/$m.tf")
    awk -v m="$m" -v s="$ms" -v tf="$tf" -v blis="$blis" -v base="$base" -v tok=$((BATCH * SEQ)) 'BEGIN {
        printf "%-5s %d tokens per step: %.0f ms/step (median), %.1f GFLOP/s of active FLOPs = %.0f%% of %s\n",
               m, tok, s * 1000, tf * 1000, 100 * tf * 1000 / blis, base }'
done
awk -v d="$(median < "$dir/dense.ms")" -v e="$(median < "$dir/moe.ms")" 'BEGIN { printf "moe / dense step time: %.2fx\n", e / d }'
