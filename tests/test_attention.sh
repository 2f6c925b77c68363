#!/bin/bash
# attention: flash (the fused kernel) against dot_product (scores, softmax,
# values), in whole training steps:
# * float32: losses and gradient norms within 1e-5 over 20 steps, at a
#   length past two 64-row blocks (150), for grouped (4 on 2) and
#   multi-query (4 on 1) heads;
# * the same bits on 1 and 2 threads, and from mtxc run and mtxc build;
# * remat full and save_dot_except_mlp (which saves the fused op's output),
#   with dropout, bit-identical to remat none;
# * bf16 within 1e-2 of float32;
# * autoselected picks flash from 128 tokens, dot_product below;
# * compile-only: flash holds no T x T temporaries (gpt2-124m at 4 x 4096:
#   under 0.3 of dot_product's step temporaries).
# Usage: tests/test_attention.sh MTXC (from the source root)
MTXC=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
root=$PWD
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cd "$dir" || exit 1
fail() { echo "FAIL: $*"; exit 1; }
. "$root/tests/metrics.sh"
base="$root/configs/base.yml"
common="model_name=tiny max_target_length=150 per_device_batch_size=2 dtype=float32 learning_rate_schedule_steps=20"

for kv in 2 1; do
    for a in dot_product flash; do
        # shellcheck disable=SC2086
        "$MTXC" build "$base" $common base_num_kv_heads=$kv attention=$a -o "t_$a" > /dev/null || fail "build $a"
        "./t_$a" steps=20 log_period=100 metrics_file="$a.$kv.jsonl" > log 2>&1 || { cat log; fail "train $a"; }
    done
    worst_diff "flash vs dot_product, 4 query heads on $kv" "dot_product.$kv.jsonl" "flash.$kv.jsonl" 1e-5 20 ||
        fail "flash strays from dot_product"
done
MTX_NUM_THREADS=1 ./t_flash steps=20 log_period=100 metrics_file=one.jsonl > /dev/null || fail "1 thread"
cmp -s <(learning flash.1.jsonl) <(learning one.jsonl) || fail "flash on 1 thread differs from 2 threads"
# shellcheck disable=SC2086
"$MTXC" run "$base" $common base_num_kv_heads=1 attention=flash steps=20 log_period=100 metrics_file=jit.jsonl \
    > log 2>&1 || { cat log; fail "mtxc run"; }
cmp -s <(learning flash.1.jsonl) <(learning jit.jsonl) || fail "flash: mtxc run differs from mtxc build"
echo "flash: the same bits on 1 and 2 threads, and from mtxc run"

for policy in none full save_dot_except_mlp; do
    # shellcheck disable=SC2086
    "$MTXC" build "$base" $common attention=flash dropout_rate=0.1 remat_policy=$policy -o r > /dev/null ||
        fail "build remat $policy"
    ./r steps=5 log_period=100 metrics_file="remat.$policy.jsonl" > /dev/null || fail "remat $policy"
    cmp -s <(learning remat.none.jsonl) <(learning "remat.$policy.jsonl") || fail "remat $policy differs from none"
done
echo "flash: remat full and save_dot_except_mlp bit-identical to none"

# shellcheck disable=SC2086
"$MTXC" build "$base" $common base_num_kv_heads=1 attention=flash dtype=bfloat16 -o b > /dev/null || fail "build bf16"
./b steps=20 log_period=100 metrics_file=bfloat16.jsonl > /dev/null || fail "train bf16"
worst_diff "flash: bf16 vs float32" flash.1.jsonl bfloat16.jsonl 1e-2 20 || fail "bf16 flash strays"

[ "$("$MTXC" ir "$base" model_name=tiny max_target_length=128 | grep -c '= flash_attention ')" -gt 0 ] ||
    fail "autoselected did not pick flash at 128 tokens"
[ "$("$MTXC" ir "$base" model_name=tiny max_target_length=127 | grep -c '= flash_attention ')" -eq 0 ] ||
    fail "autoselected picked flash below 128 tokens"

# compile-only: gpt2-124m at 4 x 4096, remat none
for a in dot_product flash; do
    "$MTXC" compile-only "$base" model_name=gpt2-124m per_device_batch_size=4 max_target_length=4096 trainable_position_size=4096 \
        remat_policy=none dtype=float32 attention=$a > "co.$a"
    rc=$?
    [ $rc -eq 0 ] || { [ $a = dot_product ] && [ $rc -eq 1 ]; } || fail "compile-only $a: exit $rc"   # 1: does not fit
done
gb() { sed -n 's/^ *step temporaries *\([0-9.]*\) GB.*/\1/p' "$1"; }
echo "gpt2-124m 4 x 4096, remat none, step temporaries: dot_product $(gb co.dot_product) GB, flash $(gb co.flash) GB"
# (what remains is mostly the logits and their gradient: num_vocab_tiling's part)
awk -v f="$(gb co.flash)" -v d="$(gb co.dot_product)" 'BEGIN { exit !(f > 0 && f < 0.3 * d) }' ||
    fail "flash needs $(gb co.flash) GB"
echo "attention: ok"
