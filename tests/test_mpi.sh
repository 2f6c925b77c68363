#!/bin/bash
# Data, FSDP and tensor parallelism over MPI: 2 ranks (ici_data_parallelism=2,
# ici_fsdp_parallelism=2 or ici_tensor_parallelism=2) give the same losses,
# gradient norms and eval losses as 1 device with the same global batch
# (FSDP: as data parallelism), within 1e-5 relative over 20 steps, with
# gradient accumulation, dropout and an eval batch unlike the train batch; an FSDP run restarted from
# its sharded checkpoints continues exactly, and refuses checkpoints of
# another mesh; FSDP's per-rank peak memory is well below data parallelism's
# for gpt2-124m; a trainer started on the wrong number of ranks says so; a
# rank that dies ends the job instead of hanging; only rank 0 writes; gemma
# (one kv head, replicated) and gemma2 under tensor parallelism; mixtral under
# FSDP and expert parallelism (2 and 4 ranks, and with FSDP; resumed from
# its expert shards); pruning a shard's checkpoints never follows a symlink.
# Usage: tests/test_mpi.sh MTXC (from the source root)
MTXC=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
root=$PWD
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cd "$dir" || exit 1
fail() { echo "FAIL: $*"; exit 1; }
MPIRUN="mpirun --allow-run-as-root --oversubscribe -np 2"
# float32: the comparisons are to 1e-5 (tests/test_bf16.sh runs the same meshes in bf16)
common="dtype=float32 model_name=tiny override_model_config=true dropout_rate=0.1 enable_dropout=true gradient_accumulation_steps=2 learning_rate_schedule_steps=20"
# shellcheck disable=SC2086
"$MTXC" build "$root/configs/base.yml" $common ici_data_parallelism=2 per_device_batch_size=4 eval_per_device_batch_size=2 -o dp2 > /dev/null || fail build
# shellcheck disable=SC2086
"$MTXC" build "$root/configs/base.yml" $common per_device_batch_size=8 eval_per_device_batch_size=4 -o dp1 > /dev/null || fail build
# shellcheck disable=SC2086
"$MTXC" build "$root/configs/base.yml" $common ici_fsdp_parallelism=2 per_device_batch_size=4 eval_per_device_batch_size=2 -o fsdp2 > /dev/null || fail build
# shellcheck disable=SC2086
"$MTXC" build "$root/configs/base.yml" $common ici_tensor_parallelism=2 per_device_batch_size=4 eval_per_device_batch_size=2 -o tp2 > /dev/null || fail build
args="steps=20 log_period=100 eval_interval=10 eval_steps=2"
# shellcheck disable=SC2086
$MPIRUN ./dp2 $args run_name=r2 metrics_file=m2.jsonl > log2 2>&1 || { cat log2; fail "mpirun"; }
# shellcheck disable=SC2086
./dp1 $args run_name=r1 metrics_file=m1.jsonl > log1 2>&1 || fail "single device"
# shellcheck disable=SC2086
$MPIRUN ./fsdp2 $args run_name=f2 metrics_file=f2.jsonl > logf 2>&1 || { cat logf; fail "mpirun fsdp"; }
# shellcheck disable=SC2086
$MPIRUN ./tp2 $args run_name=t2 metrics_file=t2.jsonl > logt 2>&1 || { cat logt; fail "mpirun tensor"; }
[ "$(wc -l < m2.jsonl)" -eq 22 ] || fail "rank 0 alone writes metrics: $(wc -l < m2.jsonl) lines, want 22"
[ -d r2/checkpoints/20 ] || fail "no checkpoint from rank 0"
. "$root/tests/metrics.sh"
worst_diff "data parallel, 2 ranks vs 1 device" m1.jsonl m2.jsonl 1e-5 22 || fail "2 ranks differ from 1 device"
worst_diff "fsdp, 2 ranks vs data parallel" m2.jsonl f2.jsonl 1e-5 22 || fail "fsdp differs from data parallelism"
worst_diff "tensor parallel, 2 ranks vs 1 device" m1.jsonl t2.jsonl 1e-5 22 || fail "tensor parallelism differs from 1 device"
[ -d t2/checkpoints/tensor-0-of-2/20 ] && [ -d t2/checkpoints/tensor-1-of-2/20 ] || fail "no tensor shard checkpoints"
# Both axes at once, 4 ranks (oversubscribed): fsdp 2 x tensor 2, with the
# random key in the state (pure_nnx: the same masks as the Linen form).
# shellcheck disable=SC2086
"$MTXC" build "$root/configs/base.yml" $common ici_fsdp_parallelism=2 ici_tensor_parallelism=2 per_device_batch_size=2 eval_per_device_batch_size=1 pure_nnx=true \
    -o ft4 > /dev/null || fail build
# shellcheck disable=SC2086
mpirun --allow-run-as-root --oversubscribe -np 4 ./ft4 $args metrics_file=ft4.jsonl > logft 2>&1 || { cat logft; fail "fsdp x tensor"; }
worst_diff "fsdp 2 x tensor 2, 4 ranks vs 1 device" m1.jsonl ft4.jsonl 1e-5 22 || fail "fsdp x tensor differs from 1 device"
# gpt3 (biases, LayerNorm, tied logits) under tensor parallelism.
g3="dtype=float32 model_name=gpt3-52k override_model_config=true opt_type=adamw dropout_rate=0.1 enable_dropout=true learning_rate_schedule_steps=20 max_target_length=32"
# shellcheck disable=SC2086
"$MTXC" build "$root/configs/base.yml" $g3 ici_tensor_parallelism=2 per_device_batch_size=2 -o g3t > /dev/null || fail build
# shellcheck disable=SC2086
"$MTXC" build "$root/configs/base.yml" $g3 per_device_batch_size=4 -o g31 > /dev/null || fail build
# shellcheck disable=SC2086
$MPIRUN ./g3t $args metrics_file=g3t.jsonl > logg 2>&1 || { cat logg; fail "gpt3 tensor"; }
# shellcheck disable=SC2086
./g31 $args metrics_file=g31.jsonl > /dev/null 2>&1 || fail "gpt3 one device"
worst_diff "gpt3-52k tensor parallel, 2 ranks vs 1 device" g31.jsonl g3t.jsonl 1e-5 22 || fail "gpt3 tensor parallelism differs"
# gemma's one kv head, replicated on both ranks (Megatron's multi-query), and
# gemma2's local/global pairs under tensor parallelism.
for m in tiny-gemma tiny-gemma2; do
    g="dtype=float32 model_name=$m override_model_config=true dropout_rate=0.1 enable_dropout=true learning_rate_schedule_steps=20 max_target_length=32"
    # shellcheck disable=SC2086
    "$MTXC" build "$root/configs/base.yml" $g ici_tensor_parallelism=2 per_device_batch_size=2 -o $m-t2 > /dev/null || fail build
    # shellcheck disable=SC2086
    "$MTXC" build "$root/configs/base.yml" $g per_device_batch_size=4 -o $m-t1 > /dev/null || fail build
    # shellcheck disable=SC2086
    $MPIRUN ./$m-t2 $args metrics_file=$m-t2.jsonl > log-$m 2>&1 || { cat log-$m; fail "$m tensor"; }
    # shellcheck disable=SC2086
    ./$m-t1 $args metrics_file=$m-t1.jsonl > /dev/null 2>&1 || fail "$m one device"
    worst_diff "$m tensor parallel, 2 ranks vs 1 device" $m-t1.jsonl $m-t2.jsonl 1e-5 22 || fail "$m tensor parallelism differs"
done
# mixtral under FSDP: its experts' [E, ...] weights sharded, gathered and reduce-scattered.
mx="dtype=float32 model_name=tiny-mixtral override_model_config=true learning_rate_schedule_steps=20 max_target_length=32"
# shellcheck disable=SC2086
"$MTXC" build "$root/configs/base.yml" $mx ici_fsdp_parallelism=2 per_device_batch_size=2 -o mx-f2 > /dev/null || fail build
# shellcheck disable=SC2086
"$MTXC" build "$root/configs/base.yml" $mx per_device_batch_size=4 -o mx-1 > /dev/null || fail build
# shellcheck disable=SC2086
$MPIRUN ./mx-f2 $args metrics_file=mx-f2.jsonl > log-mx 2>&1 || { cat log-mx; fail "tiny-mixtral fsdp"; }
# shellcheck disable=SC2086
./mx-1 $args metrics_file=mx-1.jsonl > /dev/null 2>&1 || fail "tiny-mixtral one device"
worst_diff "tiny-mixtral fsdp, 2 ranks vs 1 device" mx-1.jsonl mx-f2.jsonl 1e-5 22 || fail "tiny-mixtral under fsdp differs"
# Expert parallelism: each rank holds 4 / ep of the experts and the rows go to
# their experts' ranks and back by all-to-all; 2 ranks, 4 ranks (one expert
# each) and fsdp 2 x expert 2, all against one device.
for mesh in "e2 2 ici_expert_parallelism=2 per_device_batch_size=2" "e4 4 ici_expert_parallelism=4 per_device_batch_size=1" \
            "fe4 4 ici_fsdp_parallelism=2 ici_expert_parallelism=2 per_device_batch_size=1"; do
    set -- $mesh
    name=$1 ranks=$2
    shift 2
    # shellcheck disable=SC2086
    "$MTXC" build "$root/configs/base.yml" $mx "$@" -o mx-$name > /dev/null || fail "build tiny-mixtral $name"
    # shellcheck disable=SC2086
    mpirun --allow-run-as-root --oversubscribe -np $ranks ./mx-$name $args run_name=$name metrics_file=mx-$name.jsonl > log-mx 2>&1 ||
        { cat log-mx; fail "tiny-mixtral $name"; }
    worst_diff "tiny-mixtral $* ($ranks ranks) vs 1 device" mx-1.jsonl mx-$name.jsonl 1e-5 22 || fail "tiny-mixtral $name differs"
done
[ -d e2/checkpoints/expert-0-of-2/20 ] && [ -d e2/checkpoints/expert-1-of-2/20 ] || fail "no expert shard checkpoints"
[ -d fe4/checkpoints/fsdp-1-of-2.expert-1-of-2/20 ] || fail "no fsdp x expert shard checkpoints: $(ls fe4/checkpoints)"
# FSDP checkpoints: one directory per shard; a restart at step 10 goes on as the run that never stopped.
[ -d f2/checkpoints/fsdp-0-of-2/20 ] && [ -d f2/checkpoints/fsdp-1-of-2/20 ] || fail "no fsdp shard checkpoints"
# shellcheck disable=SC2086
$MPIRUN ./fsdp2 $args steps=10 run_name=f3 metrics_file=f3.jsonl > /dev/null 2>&1 || fail "fsdp first half"
# shellcheck disable=SC2086
$MPIRUN ./fsdp2 $args run_name=f3 metrics_file=f3.jsonl > logr 2>&1 || { cat logr; fail "fsdp resume"; }
grep -q "resuming from f3/checkpoints/fsdp-0-of-2/10" logr || fail "fsdp did not resume: $(cat logr)"
learning() { sed 's/, "perf.*}/}/' "$1"; }     # without the timings
cmp <(learning f2.jsonl) <(learning f3.jsonl) > /dev/null ||
    fail "the resumed fsdp run differs from the uninterrupted one"
# The same for tensor parallelism.
# shellcheck disable=SC2086
$MPIRUN ./tp2 $args steps=10 run_name=t3 metrics_file=t3.jsonl > /dev/null 2>&1 || fail "tensor first half"
# shellcheck disable=SC2086
$MPIRUN ./tp2 $args run_name=t3 metrics_file=t3.jsonl > logr 2>&1 || { cat logr; fail "tensor resume"; }
grep -q "resuming from t3/checkpoints/tensor-0-of-2/10" logr || fail "tensor did not resume: $(cat logr)"
cmp <(learning t2.jsonl) <(learning t3.jsonl) > /dev/null || fail "the resumed tensor run differs from the uninterrupted one"
# And for expert parallelism.
# shellcheck disable=SC2086
$MPIRUN ./mx-e2 $args steps=10 run_name=e3 metrics_file=mx-e3.jsonl > /dev/null 2>&1 || fail "expert first half"
# shellcheck disable=SC2086
$MPIRUN ./mx-e2 $args run_name=e3 metrics_file=mx-e3.jsonl > logr 2>&1 || { cat logr; fail "expert resume"; }
grep -q "resuming from e3/checkpoints/expert-0-of-2/10" logr || fail "expert did not resume: $(cat logr)"
cmp <(learning mx-e2.jsonl) <(learning mx-e3.jsonl) > /dev/null || fail "the resumed expert run differs from the uninterrupted one"
# A shard's step moved elsewhere and linked back: pruning on that rank skips
# the link and its files stay.
mv f3/checkpoints/fsdp-1-of-2/10 kept1 && ln -s "$PWD/kept1" f3/checkpoints/fsdp-1-of-2/10
# shellcheck disable=SC2086
$MPIRUN ./fsdp2 $args steps=22 run_name=f3 max_num_checkpoints_to_keep=1 > logp 2>&1 || { cat logp; fail "fsdp prune"; }
[ "$(ls kept1 | tr '\n' ' ')" = "meta.json state.safetensors " ] || fail "fsdp prune went through a link: $(ls kept1)"
[ "$(ls f3/checkpoints/fsdp-0-of-2 | tr '\n' ' ')/$(ls f3/checkpoints/fsdp-1-of-2 | tr '\n' ' ')" = "22 /10 22 " ] ||
    fail "fsdp prune left $(ls f3/checkpoints/*)"
out=$($MPIRUN ./dp2 steps=2 run_name=f2 2>&1) && fail "a data-parallel trainer took fsdp checkpoints"
case "$out" in *"f2/checkpoints/fsdp-"*"-of-2 holds checkpoints of a mesh with fsdp 2 x tensor 1 x expert 1; this trainer's mesh has fsdp 1 x tensor 1 x expert 1"*) ;;
    *) fail "mesh mismatch message: $out" ;; esac
# load_full_state_path names any shard's step: each rank loads its own, and
# the run goes on as the run that wrote them would.
# shellcheck disable=SC2086
$MPIRUN ./fsdp2 $args steps=22 log_period=1 run_name=f5 load_full_state_path=f2/checkpoints/fsdp-1-of-2/20 > logl 2>&1 ||
    { cat logl; fail "load_full_state_path under fsdp"; }
grep -q "full state from f2/checkpoints/fsdp-0-of-2/20: step 20" logl || fail "rank 0 loaded another shard: $(cat logl)"
# shellcheck disable=SC2086
$MPIRUN ./fsdp2 $args steps=22 log_period=1 run_name=f2 > logc 2>&1 || fail "fsdp continue"
losses() { tr '\r' '\n' < "$1" | grep -E "^.*step +2[12] " | sed 's/.*\(step *[0-9]* | loss [0-9.]*\).*/\1/'; }
[ "$(losses logl)" = "$(losses logc)" ] && [ -n "$(losses logl)" ] || fail "loaded state differs: $(losses logl) / $(losses logc)"
out=$($MPIRUN ./fsdp2 steps=2 run_name=f6 load_full_state_path=f2/checkpoints/20 2>&1) && fail "an unsharded path was taken"
case "$out" in *"must name a shard's step directory, as RUN/checkpoints/fsdp-0-of-N/STEP; got 'f2/checkpoints/20'"*) ;;
    *) fail "unsharded load path message: $out" ;; esac
out=$(./dp2 steps=2 2>&1); rc=$?
[ $rc -eq 2 ] || fail "wrong rank count: exit $rc"
case "$out" in *"compiled for a mesh of 2 devices (data 2 x fsdp 1 x tensor 1 x expert 1) but runs on 1 rank: start it as mpirun -np 2"*) ;; *) fail "$out" ;; esac
# Per-rank peak memory, gpt2-124m: FSDP holds half the params and optimizer
# state and gradient chunks; data parallelism all of them.
for mesh in data fsdp; do
    "$MTXC" build "$root/configs/base.yml" model_name=gpt2-124m override_model_config=true per_device_batch_size=1 max_target_length=64 \
        ici_${mesh}_parallelism=2 -o gpt2-$mesh > /dev/null || fail "build gpt2-124m $mesh"
    $MPIRUN ./gpt2-$mesh steps=1 > log-$mesh 2>&1 || { cat log-$mesh; fail "gpt2-124m $mesh"; }
done
peak() { sed -n 's/.*peak memory \([0-9.]*\) MB.*/\1/p' "$1"; }
awk -v d="$(peak log-data)" -v f="$(peak log-fsdp)" 'BEGIN {
    printf "gpt2-124m on 2 ranks, peak memory of rank 0: data parallel %.0f MB, fsdp %.0f MB\n", d, f
    exit !(d > 0 && f < 0.8 * d) }' || fail "fsdp does not save memory"
# A rank killed mid-run: mpirun ends the job within seconds.
$MPIRUN ./dp2 steps=1000000 log_period=1000000 > /dev/null 2>&1 &
job=$!
sleep 1
pkill -9 -f "dp2 steps=1000000" -n
for _ in $(seq 30); do kill -0 $job 2> /dev/null || break; sleep 0.5; done
kill -0 $job 2> /dev/null && { kill -9 $job; fail "the job hangs after a rank died"; }
wait $job && fail "the job succeeded after a rank died"
echo "mpi: ok"
