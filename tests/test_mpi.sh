#!/bin/bash
# Data parallelism over MPI: 2 ranks (ici_data_parallelism=2) give the same
# losses, gradient norms and eval losses as 1 device with the same global
# batch, within 1e-5 relative over 20 steps, with gradient accumulation and
# dropout on; a trainer started on the wrong number of ranks says so; a rank
# that dies ends the job instead of hanging; only rank 0 writes.
# Usage: tests/test_mpi.sh MTXC (from the source root)
MTXC=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
root=$PWD
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cd "$dir" || exit 1
fail() { echo "FAIL: $*"; exit 1; }
MPIRUN="mpirun --allow-run-as-root --oversubscribe -np 2"
common="model_name=tiny dropout_rate=0.1 enable_dropout=true gradient_accumulation_steps=2"
# shellcheck disable=SC2086
"$MTXC" build "$root/configs/base.yml" $common ici_data_parallelism=2 per_device_batch_size=4 -o dp2 > /dev/null || fail build
# shellcheck disable=SC2086
"$MTXC" build "$root/configs/base.yml" $common per_device_batch_size=8 -o dp1 > /dev/null || fail build
args="steps=20 log_period=100 eval_interval=10 eval_steps=2"
# shellcheck disable=SC2086
$MPIRUN ./dp2 $args run_name=r2 metrics_file=m2.jsonl > log2 2>&1 || { cat log2; fail "mpirun"; }
# shellcheck disable=SC2086
./dp1 $args run_name=r1 metrics_file=m1.jsonl > log1 2>&1 || fail "single device"
[ "$(wc -l < m2.jsonl)" -eq 22 ] || fail "rank 0 alone writes metrics: $(wc -l < m2.jsonl) lines, want 22"
[ -d r2/checkpoints/20 ] || fail "no checkpoint from rank 0"
paste -d' ' m1.jsonl m2.jsonl | tr -d '{},"' | awk '
    { for (i = 1; i <= NF; i++) if ($i == "learning/loss:" || $i == "learning/grad_norm:" || $i == "eval/avg_loss:") v[++c] = $(i + 1)
      for (j = 1; j <= c / 2; j++) { a = v[j]; b = v[j + c / 2]; rel = (a - b) / a; if (rel < 0) rel = -rel; if (rel > worst) worst = rel }
      c = 0 }
    END { printf "data parallel, 2 ranks vs 1 device, 20 steps: worst relative difference %.2g\n", worst; exit !(worst <= 1e-5) }' ||
    fail "2 ranks differ from 1 device"
out=$(./dp2 steps=2 2>&1); rc=$?
[ $rc -eq 2 ] || fail "wrong rank count: exit $rc"
case "$out" in *"compiled for a mesh of 2 devices (data parallelism 2) but runs on 1 rank: start it as mpirun -np 2"*) ;; *) fail "$out" ;; esac
# A rank killed mid-run: mpirun ends the job within seconds.
$MPIRUN ./dp2 steps=1000000 log_period=1000000 > /dev/null 2>&1 &
job=$!
sleep 1
pkill -9 -f "dp2 steps=1000000" -n
for _ in $(seq 30); do kill -0 $job 2> /dev/null || break; sleep 0.5; done
kill -0 $job 2> /dev/null && { kill -9 $job; fail "the job hangs after a rank died"; }
wait $job && fail "the job succeeded after a rank died"
echo "mpi: ok"
