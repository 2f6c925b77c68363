#!/bin/bash
# Remat: every remat_policy computes the same bits as keeping all activations
# (with dropout and gradient accumulation on; tiny-gemma2 too), recomputes in the step, and
# shrinks the step's memory: full < minimal < none.
# Usage: tests/test_remat.sh MTXC (from the source root)
MTXC=$1
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
learning() { sed 's/, "perf.*//' "$1"; }
for pol in none full minimal save_dot_except_mlp save_qkv_proj; do
    "$MTXC" run configs/base.yml model_name=tiny override_model_config=true dropout_rate=0.1 gradient_accumulation_steps=2 remat_policy=$pol \
        steps=15 log_period=100 metrics_file="$dir/$pol" > "$dir/log" 2>&1 || { cat "$dir/log"; echo "FAIL: $pol"; exit 1; }
    cmp -s <(learning "$dir/none") <(learning "$dir/$pol") || { echo "FAIL: remat_policy $pol changes the numbers"; exit 1; }
done
# gemma2: a remat unit is MaxText's layer, a local and a global block
for pol in none full save_dot_except_mlp; do
    "$MTXC" run configs/base.yml model_name=tiny-gemma2 override_model_config=true dropout_rate=0.1 enable_dropout=true pure_nnx=true remat_policy=$pol \
        steps=8 log_period=100 metrics_file="$dir/g2.$pol" > "$dir/log" 2>&1 || { cat "$dir/log"; echo "FAIL: gemma2 $pol"; exit 1; }
    cmp -s <(learning "$dir/g2.none") <(learning "$dir/g2.$pol") || { echo "FAIL: gemma2 remat_policy $pol changes the numbers"; exit 1; }
done
"$MTXC" ir configs/base.yml model_name=tiny override_model_config=true remat_policy=full | grep -q "# recompute (remat full): layers.1: mlp" ||
    { echo "FAIL: no recomputation in the IR"; exit 1; }
arena() { "$MTXC" compile-only configs/base.yml model_name=llama-125m override_model_config=true max_target_length=1024 per_device_batch_size=2 \
          remat_policy="$1" --format json | sed 's/.*"step_temporaries": \([0-9]*\).*/\1/'; }
none=$(arena none); minimal=$(arena minimal); full=$(arena full)
[ "$full" -lt "$minimal" ] && [ "$minimal" -lt "$none" ] || { echo "FAIL: temporaries full $full minimal $minimal none $none"; exit 1; }
echo "remat: all policies bit-identical; llama-125m temporaries none $none, minimal $minimal, full $full bytes"
