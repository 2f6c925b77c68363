#!/bin/bash
# Long sequences: what grows with tokens, in whole training steps.
# attention: flash (the fused kernel) against dot_product (scores, softmax,
# values):
# * float32: losses and gradient norms within 1e-5 over 20 steps, at a
#   length past two 64-row blocks (150), for grouped (4 on 2) and
#   multi-query (4 on 1) heads, with attn_logits_soft_cap 0.5, and gemma2's
#   local/global pairs with a sliding window of 70;
# * the same bits on 1 and 2 threads, and from mtxc run and mtxc build;
# * remat full and save_dot_except_mlp (which saves the fused op's output),
#   with dropout, bit-identical to remat none;
# * bf16 within 1e-2 of float32;
# * autoselected picks flash from 128 tokens, dot_product below;
# num_vocab_tiling (logits and loss a tile of tokens at a time):
# * 4 tiles against 1 within 1e-6 over 20 steps, float32, for an untied
#   (tiny) and a tied (gpt3-52k) output head, with gradient accumulation;
# * compile-only: gpt2-124m at 4 x 4096, remat none, float32 needs under
#   0.3 of dot_product's step temporaries with flash, and under 12 GB with
#   flash and 8 tiles (58 GB with neither).
# Usage: tests/test_long_sequences.sh MTXC (from the source root)
MTXC=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
root=$PWD
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cd "$dir" || exit 1
fail() { echo "FAIL: $*"; exit 1; }
. "$root/tests/metrics.sh"
base="$root/configs/base.yml"
common="model_name=tiny override_model_config=true max_target_length=150 per_device_batch_size=2 dtype=float32 learning_rate_schedule_steps=20"

for kv in 2 1; do
    for a in dot_product flash; do
        # shellcheck disable=SC2086
        "$MTXC" build "$base" $common base_num_kv_heads=$kv attention=$a -o "t_$a" > /dev/null || fail "build $a"
        "./t_$a" steps=20 log_period=100 metrics_file="$a.$kv.jsonl" > log 2>&1 || { cat log; fail "train $a"; }
    done
    worst_diff "flash vs dot_product, 4 query heads on $kv" "dot_product.$kv.jsonl" "flash.$kv.jsonl" 1e-5 20 ||
        fail "flash strays from dot_product"
done
# gemma2's soft cap on the scores: the fused kernel's against dot_product's soft_cap op
for a in dot_product flash; do
    # shellcheck disable=SC2086
    "$MTXC" build "$base" $common attention=$a attn_logits_soft_cap=0.5 -o "c_$a" > /dev/null || fail "build cap $a"
    "./c_$a" steps=20 log_period=100 metrics_file="cap.$a.jsonl" > log 2>&1 || { cat log; fail "train cap $a"; }
done
worst_diff "flash vs dot_product, attn_logits_soft_cap 0.5" cap.dot_product.jsonl cap.flash.jsonl 1e-5 20 ||
    fail "soft-capped flash strays from dot_product"
# gemma2's local layers: a sliding window of 70 keys (past a 64-row block) in
# both kernels, the global layers whole
for a in dot_product flash; do
    # shellcheck disable=SC2086
    "$MTXC" build "$base" $common attention=$a decoder_block=gemma2 sliding_window_size=70 use_post_attn_norm=true \
        -o "w_$a" > /dev/null || fail "build window $a"
    "./w_$a" steps=20 log_period=100 metrics_file="window.$a.jsonl" > log 2>&1 || { cat log; fail "train window $a"; }
done
worst_diff "flash vs dot_product, gemma2 with sliding_window_size 70" window.dot_product.jsonl window.flash.jsonl 1e-5 20 ||
    fail "windowed flash strays from dot_product"
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

[ "$("$MTXC" ir "$base" model_name=tiny override_model_config=true max_target_length=128 | grep -c '= flash_attention ')" -gt 0 ] ||
    fail "autoselected did not pick flash at 128 tokens"
[ "$("$MTXC" ir "$base" model_name=tiny override_model_config=true max_target_length=127 | grep -c '= flash_attention ')" -eq 0 ] ||
    fail "autoselected picked flash below 128 tokens"

# compile-only: gpt2-124m at 4 x 4096, remat none
for a in dot_product flash; do
    "$MTXC" compile-only "$base" model_name=gpt2-124m override_model_config=true per_device_batch_size=4 max_target_length=4096 trainable_position_size=4096 \
        remat_policy=none dtype=float32 attention=$a > "co.$a"
    rc=$?
    [ $rc -eq 0 ] || { [ $a = dot_product ] && [ $rc -eq 1 ]; } || fail "compile-only $a: exit $rc"   # 1: does not fit
done
gb() { sed -n 's/^ *step temporaries *\([0-9.]*\) GB.*/\1/p' "$1"; }
echo "gpt2-124m 4 x 4096, remat none, step temporaries: dot_product $(gb co.dot_product) GB, flash $(gb co.flash) GB"
# (what remains is mostly the logits and their gradient: num_vocab_tiling's part)
awk -v f="$(gb co.flash)" -v d="$(gb co.dot_product)" 'BEGIN { exit !(f > 0 && f < 0.3 * d) }' ||
    fail "flash needs $(gb co.flash) GB"
"$MTXC" compile-only "$base" model_name=gpt2-124m override_model_config=true per_device_batch_size=4 max_target_length=4096 trainable_position_size=4096 \
    remat_policy=none dtype=float32 attention=flash num_vocab_tiling=8 > co.tiled || fail "compile-only tiled"
echo "  with num_vocab_tiling 8: $(gb co.tiled) GB"
awk -v f="$(gb co.tiled)" 'BEGIN { exit !(f > 0 && f < 12) }' || fail "flash and 8 tiles need $(gb co.tiled) GB"

for m in tiny gpt3-52k; do
    for tiles in 1 4; do
        "$MTXC" build "$base" model_name=$m override_model_config=true per_device_batch_size=4 max_target_length=64 dtype=float32 \
            gradient_accumulation_steps=2 num_vocab_tiling=$tiles -o v > /dev/null || fail "build $m tiles $tiles"
        ./v steps=20 log_period=100 metrics_file="$m.tiles$tiles.jsonl" > /dev/null || fail "train $m tiles $tiles"
    done
    worst_diff "$m: num_vocab_tiling 4 vs 1" "$m.tiles1.jsonl" "$m.tiles4.jsonl" 1e-6 20 || fail "$m: tiling changes the numbers"
done
"$MTXC" ir "$base" model_name=tiny override_model_config=true num_vocab_tiling=4 remat_policy=none | grep -q "recompute (remat full): output tile 3" ||
    fail "tiles are not recomputed before their backward"
echo "long sequences: ok"
