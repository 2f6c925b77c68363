#!/bin/sh
# mtxc run (clang + LLVM ORC in process) and a trainer from mtxc build (the
# system compiler) compute bit-identical losses, gradient norms and learning
# rates for 50 steps, for tiny (llama2) and gpt3-52k (gpt3).
# Usage: tests/test_jit.sh MTXC (from the source root)
MTXC=$1
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
learning() { sed 's/, "perf.*//' "$1"; }   # drop the timings
# gpt3-52k at a smaller batch than its default 12 x 2048 tokens, to keep the suite quick.
for m in tiny gpt3-52k; do
    size=""; [ $m = gpt3-52k ] && size="per_device_batch_size=4 max_target_length=128"
    # shellcheck disable=SC2086
    "$MTXC" run configs/base.yml model_name=$m override_model_config=true $size steps=50 log_period=50 metrics_file="$dir/run_$m.jsonl" > "$dir/run.log" 2>&1 ||
        { cat "$dir/run.log"; echo "FAIL: mtxc run $m"; exit 1; }
    # shellcheck disable=SC2086
    "$MTXC" build configs/base.yml model_name=$m override_model_config=true $size -o "$dir/trainer_$m" > /dev/null &&
        "$dir/trainer_$m" steps=50 log_period=50 metrics_file="$dir/build_$m.jsonl" > /dev/null ||
        { echo "FAIL: mtxc build $m"; exit 1; }
    [ "$(wc -l < "$dir/run_$m.jsonl")" -eq 50 ] || { echo "FAIL: $m: run wrote $(wc -l < "$dir/run_$m.jsonl") metrics lines"; exit 1; }
    if ! cmp -s "$(learning "$dir/run_$m.jsonl" > "$dir/a"; echo "$dir/a")" "$(learning "$dir/build_$m.jsonl" > "$dir/b"; echo "$dir/b")"; then
        echo "FAIL: $m: mtxc run and the built trainer differ:"; diff "$dir/a" "$dir/b" | head -4; exit 1
    fi
    echo "$m: 50 steps bit-identical ($(grep -o 'lowering.*' "$dir/run.log"))"
done
