#!/bin/bash
# End to end: mtxc build a trainer for the tiny model, train 200 steps on the
# synthetic task and require the loss to fall at least 5x; the trainer's
# command line refuses compile-time and unknown keys; under taskset -c 0 and
# mpirun -np 1 it runs one thread.
# Usage: tests/test_train.sh MTXC (from the source root)
MTXC=$1
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

"$MTXC" build configs/base.yml model_name=tiny -o "$dir/trainer" > "$dir/build.log" 2>&1 ||
    { cat "$dir/build.log"; fail "mtxc build"; }
"$dir/trainer" steps=200 log_period=50 > "$dir/train.log" 2>&1 || { cat "$dir/train.log"; fail "trainer exited $?"; }
cat "$dir/train.log"
first=$(sed -n 's/^step *1 | loss \([0-9.]*\).*/\1/p' "$dir/train.log")
last=$(sed -n 's/^step *200 | loss \([0-9.]*\).*/\1/p' "$dir/train.log")
[ -n "$first" ] && [ -n "$last" ] || fail "no loss at steps 1 and 200"
awk -v a="$first" -v b="$last" 'BEGIN { exit !(a >= 5 * b) }' || fail "loss fell from $first to $last, less than 5x"
echo "loss fell from $first to $last"

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
out=$("$dir/trainer" steps=0 2>&1); rc=$?
[ $rc -eq 2 ] || fail "steps=0: exit $rc"
case "$out" in *"key 'steps' expects an integer >= 1, got '0'"*) ;; *) fail "bad value message: $out" ;; esac
"$dir/trainer" --help | grep -q "  steps=150001" || fail "--help lists run-time keys"
# run-time values are read as mtxc reads them: booleans strictly, integers within range, run_name one directory
for bad in "enable_checkpointing=yes|key 'enable_checkpointing' expects true or false, got 'yes'" \
           "steps=9223372036854775808|key 'steps' expects an integer >= 1, got '9223372036854775808'" \
           "run_name=../../x|run_name '../../x' must be one directory name (no '/', not '.' or '..')" \
           "dataset_type=text dataset_path=/tmp|cannot read data file '/tmp': Is a directory"; do
    # shellcheck disable=SC2086
    out=$("$dir/trainer" ${bad%%|*} 2>&1); rc=$?
    [ $rc -eq 2 ] || fail "${bad%%|*}: exit $rc, want 2"
    case "$out" in *"trainer: error: ${bad#*|}"*) ;; *) fail "${bad%%|*}: $out" ;; esac
done

# Threads: never more than the CPUs the process may run on (taskset, and the
# core mpirun binds a lone rank to), or threads spin against each other (a
# tiny step took 48 s instead of 8 ms under mpirun -np 1). The runs must end
# in time, and say 1 thread; with the losses of the unrestricted run.
timeout 60 taskset -c 0 "$dir/trainer" steps=20 log_period=20 > "$dir/t1.log" 2>&1 || fail "taskset -c 0: $(tail -2 "$dir/t1.log")"
grep -q ", 1 threads," "$dir/t1.log" || fail "taskset -c 0: $(grep threads "$dir/t1.log")"
# (OpenMPI keeps allocations to the end: no leak check in its ranks, as in test_mpi.sh)
ASAN_OPTIONS=detect_leaks=0 timeout 60 mpirun --allow-run-as-root -np 1 "$dir/trainer" steps=20 log_period=20 > "$dir/m1.log" 2>&1 ||
    fail "mpirun -np 1: $(tail -2 "$dir/m1.log")"
grep -q ", 1 threads," "$dir/m1.log" || fail "mpirun -np 1: $(grep threads "$dir/m1.log")"
[ "$(grep -a '^step *20 ' "$dir/t1.log" | cut -d'|' -f2)" = "$(grep -a 'step *20 |' "$dir/m1.log" | sed 's/.*step *20 |/|/' | cut -d'|' -f2)" ] ||
    fail "1 thread under taskset and mpirun compute different losses"
echo "train: ok"
