#!/bin/bash
# A shared machine: each trainer quiet and beside a busy loop (another
# process that wants one core), on one thread and on the default threads,
# as medians; printed as slowdowns against the same trainer quiet.
#   * the default job (configs/tiny-text.yml, 200 steps, no eval): whole runs;
#   * gpt2-124m, batch 4 x 256, remat none, float32 and bfloat16: step times
#     (steps 2.., the first touches fresh pages).
# Usage: tools/bench/busy_neighbour.sh [RUNS [STEPS]]   default 3 runs, 4 gpt2 steps
#        (from the source root after building; about 10 minutes on 2 cores)
set -e
RUNS=${1:-3}; STEPS=${2:-4}
dir=$(mktemp -d); busy=""
trap '[ -n "$busy" ] && kill "$busy" 2>/dev/null; rm -rf "$dir"' EXIT
echo "CPU: $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1), $(nproc) CPUs"
build/mtxc build configs/tiny-text.yml -o "$dir/tiny" > /dev/null
for dt in float32 bfloat16; do
    build/mtxc build configs/base.yml model_name=gpt2-124m override_model_config=true per_device_batch_size=4 \
        max_target_length=256 remat_policy=none dtype=$dt -o "$dir/gpt2_$dt" > /dev/null
done

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
# seconds of the whole tiny run: its "done:" line
tiny_run() {
    (cd "$dir" && env "$@" ./tiny steps=200 eval_interval=-1 log_period=1000 enable_checkpointing=false \
        run_name=tiny_run 2>&1) | sed -n 's/^done: 200 steps in \([0-9.]*\) s.*/\1/p'
}
# median step time of one gpt2 run, from its metrics
gpt2_run() {
    local dt=$1; shift
    rm -f "$dir/m.jsonl"
    (cd "$dir" && env "$@" ./gpt2_"$dt" steps="$STEPS" log_period=1000 enable_checkpointing=false eval_interval=-1 \
        metrics_file="$dir/m.jsonl" > /dev/null 2>&1)
    grep -v '"step": 1,' "$dir/m.jsonl" | sed -n 's|.*"perf/step_time_seconds": \([0-9.e+-]*\).*|\1|p' | median
}
# the median over RUNS of one case: tiny | float32 | bfloat16, then env
measure() {
    local what=$1; shift
    for _ in $(seq "$RUNS"); do
        if [ "$what" = tiny ]; then tiny_run "$@"; else gpt2_run "$what" "$@"; fi
    done | median
}
start_busy() { sh -c 'while :; do :; done' & busy=$!; sleep 0.5; }
stop_busy() { kill "$busy"; wait "$busy" 2>/dev/null || true; busy=""; }

threads=$(cd "$dir" && ./tiny steps=1 eval_interval=-1 enable_checkpointing=false run_name=probe 2>&1 |
          sed -n 's/.* \([0-9]*\) threads for .*/\1/p' | head -1)
kernels=$(cd "$dir" && ./gpt2_bfloat16 steps=1 enable_checkpointing=false eval_interval=-1 2>&1 |
          sed -n 's/^bf16 matmuls: //p' | head -1)
echo "default threads: $threads; bf16 GEMMs: ${kernels:-?}; float32 GEMMs: BLIS (skx kernels where AVX-512)"
printf "%-20s %9s %9s %9s %9s   %s\n" "trainer" "quiet 1" "quiet $threads" "busy 1" "busy $threads" \
       "busy/quiet ($threads thr), busy $threads thr / busy 1 thr"
for what in tiny float32 bfloat16; do
    q1=$(measure "$what" MTX_NUM_THREADS=1); qn=$(measure "$what")
    start_busy
    b1=$(measure "$what" MTX_NUM_THREADS=1); bn=$(measure "$what")
    stop_busy
    label=$what; [ "$what" = tiny ] && label="tiny job (200 steps)" || label="gpt2-124m $what"
    awk -v l="$label" -v q1="$q1" -v qn="$qn" -v b1="$b1" -v bn="$bn" 'BEGIN {
        printf "%-20s %8.2fs %8.2fs %8.2fs %8.2fs   %.2fx, %.2fx\n", l, q1, qn, b1, bn, bn / qn, bn / b1 }'
done
