#!/bin/sh
# Dropout and the random-key contract of DESIGN.md: with dropout on, the
# pure_nnx form (key in the state, advanced by the step) and the Linen form
# (key passed in by the runtime) give bit-identical losses, gradient norms and
# eval losses over 20 steps; dropout does change the numbers; the eval step
# applies none. Usage: tests/test_dropout.sh MTXC (from the source root)
MTXC=$1
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
learning() { sed 's/, "perf.*//' "$1"; }
run() {   # run NAME OVERRIDES...
    name=$1; shift
    "$MTXC" run configs/base.yml model_name=tiny override_model_config=true steps=20 log_period=100 eval_interval=10 eval_steps=2 \
        metrics_file="$dir/$name" "$@" > "$dir/log" 2>&1 || { cat "$dir/log"; echo "FAIL: $name"; exit 1; }
    learning "$dir/$name" > "$dir/$name.learning"
}
run nnx dropout_rate=0.1 enable_dropout=true pure_nnx=true
run linen dropout_rate=0.1 enable_dropout=true pure_nnx=false
run off dropout_rate=0.1 enable_dropout=false pure_nnx=false
cmp -s "$dir/nnx.learning" "$dir/linen.learning" || { echo "FAIL: pure_nnx true and false differ with dropout on"; diff "$dir/nnx.learning" "$dir/linen.learning" | head -4; exit 1; }
cmp -s "$dir/linen.learning" "$dir/off.learning" && { echo "FAIL: dropout changed nothing"; exit 1; }
# The eval step applies no dropout; the pure_nnx train step advances its key.
"$MTXC" emit configs/base.yml model_name=tiny override_model_config=true dropout_rate=0.1 pure_nnx=true -o "$dir/src" > /dev/null
awk '/^void mtx_eval_step/,/^}/' "$dir/src/step.c" | grep -q dropout && { echo "FAIL: eval step applies dropout"; exit 1; }
grep -q "s->rng\[0\] = (int64_t)rng.k0;" "$dir/src/step.c" || { echo "FAIL: pure_nnx step does not advance its key"; exit 1; }
grep -q "^void mtx_train_step(mtx_state \*s, const mtx_batch \*batch, mtx_metrics \*out)" "$dir/src/step.c" ||
    { echo "FAIL: pure_nnx signature"; exit 1; }
echo "dropout: pure_nnx true and false bit-identical over 20 steps; dropout changes the losses"
