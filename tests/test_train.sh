#!/bin/bash
# End to end: mtxc build a trainer for the tiny model (and tiny-gemma, tiny-gemma2), train
# 200 steps on the synthetic task and require the loss to fall at least 5x; the trainer's
# command line refuses compile-time and unknown keys; under taskset -c 0 and
# mpirun -np 1 it runs one thread.
# Usage: tests/test_train.sh MTXC (from the source root)
MTXC=$1
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

"$MTXC" build configs/base.yml model_name=tiny override_model_config=true -o "$dir/trainer" > "$dir/build.log" 2>&1 ||
    { cat "$dir/build.log"; fail "mtxc build"; }
"$dir/trainer" steps=200 log_period=50 > "$dir/train.log" 2>&1 || { cat "$dir/train.log"; fail "trainer exited $?"; }
cat "$dir/train.log"
first=$(sed -n 's/^step *1 | loss \([0-9.]*\).*/\1/p' "$dir/train.log")
last=$(sed -n 's/^step *200 | loss \([0-9.]*\).*/\1/p' "$dir/train.log")
[ -n "$first" ] && [ -n "$last" ] || fail "no loss at steps 1 and 200"
awk -v a="$first" -v b="$last" 'BEGIN { exit !(a >= 5 * b) }' || fail "loss fell from $first to $last, less than 5x"
echo "loss fell from $first to $last"

# The gemma blocks learn the same task: tiny-gemma (GeGLU, one kv head, tied
# normalized logits), tiny-gemma2 (local/global pairs, post norms, soft caps) and
# tiny-mixtral (4 experts, 2 per token).
for m in tiny-gemma tiny-gemma2 tiny-mixtral; do
    "$MTXC" build configs/base.yml model_name=$m override_model_config=true -o "$dir/$m" > "$dir/build.log" 2>&1 ||
        { cat "$dir/build.log"; fail "mtxc build $m"; }
    "$dir/$m" steps=200 log_period=200 > "$dir/$m.log" 2>&1 || { cat "$dir/$m.log"; fail "$m exited"; }
    first=$(sed -n 's/^step *1 | loss \([0-9.]*\).*/\1/p' "$dir/$m.log")
    last=$(sed -n 's/^step *200 | loss \([0-9.]*\).*/\1/p' "$dir/$m.log")
    awk -v a="$first" -v b="$last" 'BEGIN { exit !(a >= 5 * b) }' || fail "$m: loss fell from $first to $last, less than 5x"
    echo "$m: loss fell from $first to $last"
done

# Same seed, same losses: the run is deterministic.
"$dir/trainer" steps=200 log_period=50 > "$dir/again.log" 2>&1
diff -q <(grep '^step' "$dir/train.log" | cut -d'|' -f1-4) <(grep '^step' "$dir/again.log" | cut -d'|' -f1-4) >/dev/null ||
    fail "two runs with the same seed differ"

out=$("$dir/trainer" base_emb_dim=128 2>&1); rc=$?
[ $rc -eq 2 ] || fail "compile-time key: exit $rc, want 2"
case "$out" in *"'base_emb_dim' is compiled into this trainer"*"rebuild with mtxc build"*) ;; *) fail "compile-time key message: $out" ;; esac
out=$("$dir/trainer" stepz=3 2>&1); rc=$?
[ $rc -eq 2 ] || fail "unknown key: exit $rc"
case "$out" in *"unknown key 'stepz' (did you mean 'steps'?)"*) ;; *) fail "unknown key message: $out" ;; esac
"$dir/trainer" --help | grep -q "  steps=150001" || fail "--help lists run-time keys"
# One validator: a built trainer refuses each run-time value with the very
# line mtxc prints for it (runtime/keys/keys.c reads values for both).
n=0
for arg in steps=0 enable_checkpointing=yes steps=9223372036854775808 steps=1e3 'steps="5"' steps= steps=[1] \
           eval_steps=0 eval_interval=0 target_eval_loss=-1 peak_tflops_per_device=nan peak_tflops_per_device=-1 \
           run_name=../../x 'run_name=*x' 'run_name=a: b' dataset_type=txt max_num_checkpoints_to_keep=0 \
           "steps=$(printf '1\001')" "run_name=$(printf '%0200d' 0)/x" "steps=$(printf '[%.0s' $(seq 100000))"; do
    want=$("$MTXC" config configs/base.yml "$arg" 2>&1 > /dev/null)
    out=$("$dir/trainer" "$arg" 2>&1); rc=$?
    [ $rc -eq 2 ] || fail "trainer ${arg:0:40}: exit $rc, want 2: $out"
    [ -n "$want" ] && [ "$out" = "$want" ] || fail "trainer ${arg:0:40}: says '$out', mtxc says '$want'"
    [ ${#out} -lt 300 ] || fail "trainer ${arg:0:40}: a message of ${#out} characters"
    n=$((n + 1))
done
echo "$n bad run-time values: the trainer's message is mtxc's"
# Values are YAML: '' is the empty string (no metrics file named '').
(cd "$dir" && ./trainer steps=2 metrics_file="''" > /dev/null) || fail "metrics_file=''"
[ ! -e "$dir/''" ] || fail "metrics_file='' created a file named ''"
out=$("$dir/trainer" dataset_type=text dataset_path=/tmp 2>&1); rc=$?
[ $rc -eq 2 ] || fail "a directory as data: exit $rc, want 2"
case "$out" in *"trainer: error: cannot read data file '/tmp': it is a directory, not a file"*) ;; *) fail "a directory as data: $out" ;; esac

# Threads: never more than the CPUs the process may run on (taskset, and the
# core mpirun binds a lone rank to), or threads spin against each other (a
# tiny step took 48 s instead of 8 ms under mpirun -np 1). The runs must end
# in time, and say 1 thread; with the losses of the unrestricted run.
timeout 60 taskset -c 0 "$dir/trainer" steps=20 log_period=20 > "$dir/t1.log" 2>&1 || fail "taskset -c 0: $(tail -2 "$dir/t1.log")"
grep -q ", 1 threads for " "$dir/t1.log" || fail "taskset -c 0: $(grep threads "$dir/t1.log")"
# (OpenMPI keeps allocations to the end: no leak check in its ranks, as in test_mpi.sh)
ASAN_OPTIONS=detect_leaks=0 timeout 60 mpirun --allow-run-as-root -np 1 "$dir/trainer" steps=20 log_period=20 > "$dir/m1.log" 2>&1 ||
    fail "mpirun -np 1: $(tail -2 "$dir/m1.log")"
grep -q ", 1 threads for " "$dir/m1.log" || fail "mpirun -np 1: $(grep threads "$dir/m1.log")"
[ "$(grep -a '^step *20 ' "$dir/t1.log" | cut -d'|' -f2)" = "$(grep -a 'step *20 |' "$dir/m1.log" | sed 's/.*step *20 |/|/' | cut -d'|' -f2)" ] ||
    fail "1 thread under taskset and mpirun compute different losses"
echo "train: ok"
