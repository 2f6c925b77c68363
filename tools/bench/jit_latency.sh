#!/bin/sh
# Latency of `mtxc run` to the end of the first step, split into lowering,
# C compile (clang in process), JIT link and the step, next to `mtxc build`
# (system compiler, same -O3) plus the first step of the built trainer.
# Medians of RUNS runs. Usage: tools/bench/jit_latency.sh [RUNS]  (from the source root)
RUNS=${1:-5}
dir=$(mktemp -d); trap 'rm -rf "$dir"' EXIT
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
now_ms() { date +%s%N | awk '{printf "%.0f", $1 / 1e6}'; }
bench() {   # bench NAME OVERRIDES...
    name=$1; shift
    : > "$dir/run"; : > "$dir/build"
    for i in $(seq "$RUNS"); do
        t0=$(now_ms)
        build/mtxc run configs/base.yml "$@" steps=1 log_period=1 > "$dir/log"
        t1=$(now_ms)
        lower=$(sed -n 's/.*lowering \([0-9]*\) ms.*/\1/p' "$dir/log")
        cc=$(sed -n 's/.*C compile \([0-9]*\) ms.*/\1/p' "$dir/log")
        link=$(sed -n 's/.*JIT link \([0-9]*\) ms.*/\1/p' "$dir/log")
        step=$(sed -n 's/^step.*| *\([0-9.]*\) ms |.*/\1/p' "$dir/log")
        echo "$((t1 - t0)) $lower $cc $link $step" >> "$dir/run"
        t0=$(now_ms)
        build/mtxc build configs/base.yml "$@" -o "$dir/trainer" > "$dir/blog"
        t1=$(now_ms)
        "$dir/trainer" steps=1 log_period=1 > "$dir/tlog"
        t2=$(now_ms)
        bcc=$(sed -n 's/.*C compile \([0-9.]*\) s.*/\1/p' "$dir/blog")
        echo "$((t2 - t0)) $((t1 - t0)) $bcc" >> "$dir/build"
    done
    total=$(cut -d' ' -f1 "$dir/run" | median); lower=$(cut -d' ' -f2 "$dir/run" | median)
    cc=$(cut -d' ' -f3 "$dir/run" | median); link=$(cut -d' ' -f4 "$dir/run" | median)
    step=$(cut -d' ' -f5 "$dir/run" | median)
    btotal=$(cut -d' ' -f1 "$dir/build" | median); bbuild=$(cut -d' ' -f2 "$dir/build" | median)
    bcc=$(cut -d' ' -f3 "$dir/build" | median)
    echo "$name: mtxc run to end of step 1: $total ms (lowering $lower, C compile $cc, JIT link $link, step $step ms)"
    echo "$name: mtxc build + step 1: $btotal ms (build $bbuild ms, of which system cc $(awk -v s="$bcc" 'BEGIN {printf "%.0f", s * 1000}') ms)"
    awk -v a="$cc" -v l="$link" -v b="$bcc" -v n="$name" 'BEGIN {printf "%s: JIT compile + link is %.1fx faster than the system compiler\n", n, b * 1000 / (a + l)}'
}
bench tiny model_name=tiny
bench gpt2-124m model_name=gpt2-124m override_model_config=true per_device_batch_size=4 max_target_length=256
