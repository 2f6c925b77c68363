#!/bin/bash
# dtype=bfloat16 (MaxText's mixed precision: bf16 activations and GEMMs,
# float32 weights, gradients and optimizer state):
# * tiny and gpt3-52k train in bf16 within 1e-2 (relative) of the float32
#   losses over 30 steps, and mtxc run equals mtxc build bit for bit;
# * every optimizer, gradient accumulation, dropout (pure_nnx and Linen forms
#   bit-identical) and every remat policy (bit-identical) work in bf16;
# * data, FSDP and tensor parallelism over 2 MPI ranks match one device;
# * a bf16 run's checkpoint resumes in a float32 run and back;
# * the float32 fallback of the bf16 GEMM (MTX_BF16_GEMM=blis, what a CPU
#   without bf16 support runs) trains to the same losses within 1e-2, for
#   tiny and for mixtral's grouped GEMMs (one device and expert 2).
# Usage: tests/test_bf16.sh MTXC (from the source root)
MTXC=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
root=$PWD
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cd "$dir" || exit 1
fail() { echo "FAIL: $*"; exit 1; }
. "$root/tests/metrics.sh"
base="$root/configs/base.yml"

# bf16 against float32, and the JIT against a built trainer
for m in tiny gpt3-52k; do
    size=""; [ $m = gpt3-52k ] && size="per_device_batch_size=4 max_target_length=128"
    for dt in float32 bfloat16; do
        # shellcheck disable=SC2086
        "$MTXC" build "$base" model_name=$m override_model_config=true $size dtype=$dt -o "t_${m}_${dt}" > /dev/null || fail "build $m $dt"
        "./t_${m}_${dt}" steps=30 log_period=100 metrics_file="$m.$dt.jsonl" > log 2>&1 || { cat log; fail "train $m $dt"; }
    done
    worst_diff "$m: bf16 vs float32" "$m.float32.jsonl" "$m.bfloat16.jsonl" 1e-2 30 || fail "$m: bf16 strays from float32"
    # shellcheck disable=SC2086
    "$MTXC" run "$base" model_name=$m override_model_config=true $size dtype=bfloat16 steps=30 log_period=100 metrics_file="$m.jit.jsonl" > log 2>&1 ||
        { cat log; fail "mtxc run $m"; }
    cmp -s <(learning "$m.bfloat16.jsonl") <(learning "$m.jit.jsonl") || fail "$m: bf16 mtxc run differs from mtxc build"
done
grep -q "mtx_gemm_bf16(s->gemm\[" <("$MTXC" emit "$base" model_name=tiny override_model_config=true dtype=bfloat16 -o src > /dev/null && cat src/step.c) ||
    fail "no bf16 GEMM in the generated code"

# optimizers, accumulation, dropout and remat in bf16
bf="model_name=tiny override_model_config=true dtype=bfloat16 learning_rate_schedule_steps=20"
for o in adamw adam_pax sgd muon; do
    lr=""; [ $o = sgd ] && lr="learning_rate=1"
    # shellcheck disable=SC2086
    "$MTXC" run "$base" $bf opt_type=$o $lr steps=20 log_period=100 metrics_file="$o.jsonl" > log 2>&1 || { cat log; fail "opt_type $o"; }
    awk -v o=$o 'NR == 1 { first = $4 } END { last = $4; printf "%s: loss %s -> %s\n", o, first, last; exit !(last + 0 < first + 0) }' \
        <(tr -d ',' < "$o.jsonl") || fail "$o: the loss does not fall in bf16"
done
drop="enable_dropout=true dropout_rate=0.1 gradient_accumulation_steps=2"
for pol in none full minimal save_dot_except_mlp save_qkv_proj; do
    # shellcheck disable=SC2086
    "$MTXC" run "$base" $bf $drop remat_policy=$pol steps=10 log_period=100 metrics_file="remat_$pol.jsonl" > log 2>&1 ||
        { cat log; fail "remat_policy $pol"; }
    cmp -s <(learning remat_none.jsonl) <(learning "remat_$pol.jsonl") || fail "bf16: remat_policy $pol changes the numbers"
done
# shellcheck disable=SC2086
"$MTXC" run "$base" $bf $drop pure_nnx=true steps=10 log_period=100 metrics_file=nnx.jsonl > log 2>&1 || { cat log; fail "pure_nnx"; }
cmp -s <(learning remat_none.jsonl) <(learning nnx.jsonl) || fail "bf16: pure_nnx and Linen forms differ"
cmp -s <(learning remat_none.jsonl) <(learning adamw.jsonl) && fail "bf16: dropout and accumulation change nothing"
echo "bf16: every remat policy and both pure_nnx forms bit-identical with dropout and accumulation"

# MPI: data, fsdp and tensor axes against one device, in bf16
MPIRUN="env ASAN_OPTIONS=detect_leaks=0 mpirun --allow-run-as-root --oversubscribe -np 2"   # OpenMPI keeps allocations to the end
args="steps=10 log_period=100 eval_interval=5 eval_steps=2"
# shellcheck disable=SC2086
"$MTXC" build "$base" $bf per_device_batch_size=8 -o one > /dev/null || fail build
./one $args metrics_file=one.jsonl > log 2>&1 || { cat log; fail "one device"; }
for axis in data fsdp tensor; do
    # shellcheck disable=SC2086
    "$MTXC" build "$base" $bf ici_${axis}_parallelism=2 per_device_batch_size=4 -o "$axis" > /dev/null || fail "build $axis"
    # shellcheck disable=SC2086
    $MPIRUN "./$axis" $args metrics_file="$axis.jsonl" > log 2>&1 || { cat log; fail "mpirun $axis"; }
    worst_diff "bf16, $axis axis of 2 vs 1 device" one.jsonl "$axis.jsonl" 5e-3 12 || fail "bf16 $axis parallelism differs"
done
# the expert axis: mixtral's bf16 rows to their experts' ranks and back
mx="model_name=tiny-mixtral override_model_config=true dtype=bfloat16 max_target_length=32 learning_rate_schedule_steps=10"
# shellcheck disable=SC2086
"$MTXC" build "$base" $mx per_device_batch_size=4 -o mx1 > /dev/null || fail "build tiny-mixtral"
# shellcheck disable=SC2086
"$MTXC" build "$base" $mx ici_expert_parallelism=2 per_device_batch_size=2 -o mx2 > /dev/null || fail "build tiny-mixtral expert 2"
./mx1 $args metrics_file=mx1.jsonl > log 2>&1 || { cat log; fail "tiny-mixtral one device"; }
# shellcheck disable=SC2086
$MPIRUN ./mx2 $args metrics_file=mx2.jsonl > log 2>&1 || { cat log; fail "mpirun tiny-mixtral expert 2"; }
worst_diff "bf16, tiny-mixtral's expert axis of 2 vs 1 device" mx1.jsonl mx2.jsonl 5e-3 12 || fail "bf16 expert parallelism differs"

# checkpoints: params and moments are float32 in both, so bf16 and float32 runs load each other's
"./t_tiny_bfloat16" steps=10 log_period=100 run_name=b base_output_directory=. > log 2>&1 || { cat log; fail "bf16 save"; }
"./t_tiny_float32" steps=20 log_period=100 load_full_state_path=b/checkpoints/10 run_name=f base_output_directory=. \
    metrics_file=f.jsonl > log 2>&1 || { cat log; fail "float32 run from a bf16 checkpoint"; }
[ "$(head -1 f.jsonl | sed 's/{"step": \([0-9]*\),.*/\1/')" = 11 ] || fail "the float32 run did not resume at step 11"
"./t_tiny_bfloat16" steps=30 log_period=100 load_full_state_path=f/checkpoints/20 run_name=b2 base_output_directory=. \
    > log 2>&1 || { cat log; fail "bf16 run from a float32 checkpoint"; }
[ -d b2/checkpoints/30 ] || fail "no checkpoint of the bf16 run resumed from float32"
echo "checkpoints: bf16 -> float32 -> bf16"

# the float32 fallback of bf16 GEMMs
MTX_BF16_GEMM=blis "./t_tiny_bfloat16" steps=30 log_period=100 metrics_file=emulated.jsonl > log 2>&1 || { cat log; fail "fallback"; }
worst_diff "bf16 GEMMs emulated in float32 vs oneDNN" tiny.bfloat16.jsonl emulated.jsonl 1e-2 30 || fail "the fallback strays"
# and of mixtral's grouped GEMMs (ragged plans: an expert's rows per call), on one device and over the expert axis
MTX_BF16_GEMM=blis ./mx1 $args metrics_file=mx1-emulated.jsonl > log 2>&1 || { cat log; fail "tiny-mixtral fallback"; }
worst_diff "tiny-mixtral's grouped bf16 GEMMs emulated vs oneDNN" mx1.jsonl mx1-emulated.jsonl 1e-2 12 || fail "the grouped fallback strays"
# shellcheck disable=SC2086
MTX_BF16_GEMM=blis $MPIRUN ./mx2 $args metrics_file=mx2-emulated.jsonl > log 2>&1 || { cat log; fail "tiny-mixtral expert 2 fallback"; }
worst_diff "tiny-mixtral's expert axis, emulated vs oneDNN" mx2.jsonl mx2-emulated.jsonl 1e-2 12 || fail "the grouped fallback strays over the expert axis"
