#!/bin/bash
# Hugging Face model directories as load_parameters_path: small random
# Llama, Llama 3.1, Mistral, Qwen2, Qwen3, Gemma, Gemma 2 and Mixtral models
# in HF's layout (tests/data/hf, written with their expected numbers by
# tools/hf_reference.py, an independent float64 PyTorch implementation of
# HF's modelling code) load into the tiny presets; the first batch's loss
# equals the reference's (float32 against float64, 1e-6 relative) and mtxc
# decode's greedy tokens are the reference's. BF16 shards with an index and
# F16 load the same numbers; gemma's 250-row vocabulary pads to the preset's
# 256. Export gives the files back (import of an export: the import, bit
# for bit); sharded meshes (tensor, fsdp, fsdp x expert over MPI) import
# their shares and export from their shard checkpoints; a shrunk llama3.1-8b
# trains from an import and exports again; an imported model trains. Every
# broken directory is refused naming the file and tensor; NaN weights warn.
# Usage: tests/test_hf_checkpoint.sh MTXC (from the source root)
MTXC=$(cd "$(dirname "${1:-build/mtxc}")" && pwd)/$(basename "${1:-build/mtxc}")
root=$PWD
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
data=tests/data/hf
python3 -c "
import struct
toks = [(i * 7919 + 13) % 256 for i in range(8 * 64 + 1)]   # tools/hf_reference.py's tokens_file_sequence
open('$dir/tokens.bin', 'wb').write(struct.pack('<256i', 20240520, 1, len(toks), *[0] * 253) + struct.pack('<%dH' % len(toks), *toks))"
model() {   # the mtxc model of a case
    case $1 in
    llama-tiny) echo model_name=tiny ;;
    llama3.1-tiny) echo model_name=tiny rope_type=llama3.1 ;;
    mistral-tiny) echo model_name=tiny override_model_config=true decoder_block=mistral ;;
    qwen2-tiny) echo model_name=tiny-qwen2 ;;
    qwen3-tiny) echo model_name=tiny-qwen3 ;;
    gemma-tiny) echo model_name=tiny-gemma ;;
    gemma2-tiny) echo model_name=tiny-gemma2 query_pre_attn_scalar=24 ;;
    mixtral-tiny) echo model_name=tiny-mixtral ;;
    esac
}
first_loss() {   # first_loss CASE DIR [key=value ...]: the loss of step 1 (before any update) with DIR's parameters
    local case=$1 d=$2
    shift 2
    # shellcheck disable=SC2046
    "$MTXC" run configs/base.yml $(model "$case") dtype=float32 dataset_type=tokens "$@" \
        dataset_path="$dir/tokens.bin" eval_dataset_path="$dir/tokens.bin" enable_data_shuffling=false steps=1 \
        load_parameters_path="$d" metrics_file="$dir/m.jsonl" > "$dir/log" 2>&1 || { cat "$dir/log"; return 1; }
    sed -n 's/.*"learning\/loss": \([0-9.e+-]*\).*/\1/p' "$dir/m.jsonl"
    rm -f "$dir/m.jsonl"
}
close() { awk -v a="$1" -v b="$2" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(d <= 1e-6 * b) }'; }

cases="llama-tiny llama3.1-tiny mistral-tiny qwen2-tiny qwen3-tiny gemma-tiny gemma2-tiny mixtral-tiny"
for case in $cases; do
    want=$(sed -n 's/^loss //p' $data/$case.ref)
    got=$(first_loss $case $data/$case) || fail "$case: import"
    close "$got" "$want" || fail "$case: loss $got, the reference's $want"
    grep -q "parameters from $data/$case: step 0" "$dir/log" || fail "$case: no 'parameters from' line"
    [ $case != gemma-tiny ] || grep -q "notice: '$data/gemma-tiny': model.embed_tokens.weight has 250 vocabulary rows, \
this program 256: the rest are zero" "$dir/log" || fail "gemma-tiny: no notice of the padded vocabulary"
    prompt=$(sed -n 's/^prompt //p' $data/$case.ref)
    # shellcheck disable=SC2046
    out=$("$MTXC" decode configs/base.yml $(model $case) dtype=float32 dataset_type=tokens \
          load_parameters_path=$data/$case prompt="$prompt" 2>"$dir/err") || { cat "$dir/err"; fail "$case: decode"; }
    [ "$out" = "$prompt | $(sed -n 's/^greedy //p' $data/$case.ref)" ] || fail "$case: greedy tokens differ: $out"
    for variant in bf16-sharded f16; do
        python3 tests/hf_variants.py $data/$case "$dir/$variant" $variant || fail "making $variant"
        got=$(first_loss $case "$dir/$variant") || fail "$case $variant: import"
        close "$got" "$want" || fail "$case $variant: loss $got, the reference's $want"
    done
    echo "$case: loss $got (reference $want), $(sed -n 's/^greedy //p' $data/$case.ref | wc -w) greedy tokens as the reference's; F32, BF16 shards and F16 alike"
done


# Export: import then export in float32 gives the files' values back, for every family (gemma's
# vocabulary cut back to the checkpoint's 250 rows); gemma's query scales, 1/sqrt(32) and
# 1/sqrt(24), map neighbouring float32 values to one, and its norms are held as 1 + w (w to
# float32's resolution at 1), so there a value may come back as its neighbour or within 2^-24;
# the import of an export is the import, bit for bit, everywhere (exported again: the same).
for case in $cases; do
    vocab=$(sed -n 's/^ *"vocab_size": \([0-9]*\),*$/\1/p' $data/$case/config.json)
    for from in $data/$case "$dir/x-$case"; do
        # shellcheck disable=SC2046
        "$MTXC" export configs/base.yml $(model $case) load_parameters_path="$from" -o "$from.again" --dtype float32 \
            --vocab-size "$vocab" > "$dir/log" 2>&1 || { cat "$dir/log"; fail "$case: export of $from"; }
        [ "$from" != $data/$case ] || mv "$from.again" "$dir/x-$case"
    done
    case $case in gemma*) how=ulp ;; *) how= ;; esac
    python3 tests/hf_variants.py equal $data/$case "$dir/x-$case" $how || fail "$case: export(import(x)) is not x"
    python3 tests/hf_variants.py equal "$dir/x-$case" "$dir/x-$case.again" || fail "$case: import(export) is not the import"
    python3 - $data/$case/config.json "$dir/x-$case/config.json" <<'PY' || fail "$case: config.json differs"
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:])
diff = [k for k in a if k not in ("max_position_embeddings",) and a[k] != b.get(k)]
sys.exit(f"{diff}: {[a[k] for k in diff]} against {[b.get(k) for k in diff]}" if diff else 0)
PY
done
echo "export(import(x)) == x (bit for bit; gemma's queries and norms to float32's resolution), import(export) == import, config.json's fields alike, for the eight families"

# Sharded meshes: each rank imports its share of every parameter (the first loss is the
# reference's), and an export of the run's checkpoint, one process, reads every shard back into
# Hugging Face's layout: the files' values again (learning_rate 0 keeps the parameters).
MPIRUN="env ASAN_OPTIONS=detect_leaks=0 mpirun --allow-run-as-root --oversubscribe"   # OpenMPI keeps allocations to the end
sharded() {   # sharded CASE RANKS MESH_KEYS...
    local case=$1 np=$2 b=$dir/sharded-$1 vocab how=
    shift 2
    mkdir -p "$b"
    # shellcheck disable=SC2046
    "$MTXC" build configs/base.yml $(model $case) override_model_config=true dtype=float32 learning_rate=0 \
        per_device_batch_size=$((8 / np)) "$@" -o "$b/trainer" > "$b/log" 2>&1 || { cat "$b/log"; fail "$case $*: build"; }
    (cd "$b" && $MPIRUN -np $np ./trainer steps=1 dataset_type=tokens dataset_path="$dir/tokens.bin" \
        eval_dataset_path="$dir/tokens.bin" enable_data_shuffling=false load_parameters_path="$root/$data/$case" \
        run_name=r metrics_file=m.jsonl > log 2>&1) || { cat "$b/log"; fail "$case $*: mpirun"; }
    got=$(sed -n 's/.*"learning\/loss": \([0-9.e+-]*\).*/\1/p' "$b/m.jsonl")
    want=$(sed -n 's/^loss //p' $data/$case.ref)
    awk -v a="$got" -v b="$want" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(d <= 1e-5 * b) }' ||
        fail "$case $*: loss $got, the reference's $want"
    vocab=$(sed -n 's/^ *"vocab_size": \([0-9]*\),*$/\1/p' $data/$case/config.json)
    shard=$(ls "$b/r/checkpoints" | tail -1)
    # shellcheck disable=SC2046
    "$MTXC" export configs/base.yml $(model $case) override_model_config=true dtype=float32 learning_rate=0 \
        per_device_batch_size=$((8 / np)) "$@" load_parameters_path="$b/r/checkpoints/$shard/1" -o "$b/x" \
        --dtype float32 --vocab-size "$vocab" > "$b/log" 2>&1 || { cat "$b/log"; fail "$case $*: export"; }
    case $case in gemma*) how=ulp ;; esac
    python3 tests/hf_variants.py equal $data/$case "$b/x" $how || fail "$case $*: the sharded export is not the files"
    echo "$case over $np ranks ($*): loss $got (reference $want); exported from its $(ls "$b/r/checkpoints" | wc -l) shards: the files' values"
}
sharded llama-tiny 2 ici_tensor_parallelism=2
sharded gemma-tiny 2 ici_fsdp_parallelism=2
sharded mixtral-tiny 4 ici_fsdp_parallelism=2 ici_expert_parallelism=2
tp="model_name=tiny override_model_config=true dtype=float32 learning_rate=0 per_device_batch_size=4 ici_tensor_parallelism=2"
# shellcheck disable=SC2086
out=$("$MTXC" export configs/base.yml $tp -o "$dir/y" 2>&1) && fail "a sharded export without a checkpoint"
case "$out" in *"name one shard's step directory with load_parameters_path"*) ;; *) fail "sharded, no path: $out" ;; esac
rm -r "$dir/sharded-llama-tiny/r/checkpoints/tensor-1-of-2"
# shellcheck disable=SC2086
out=$("$MTXC" export configs/base.yml $tp load_parameters_path="$dir/sharded-llama-tiny/r/checkpoints/tensor-0-of-2/1" \
      -o "$dir/y" 2>&1) && fail "a sharded export with a shard missing"
case "$out" in *"sharded-llama-tiny/r/checkpoints/tensor-1-of-2/1"*) ;; *) fail "sharded, a shard missing: $out" ;; esac
[ ! -e "$dir/y" ] || fail "a refused sharded export wrote its directory"

# The cycle with a real preset, shrunk: llama3.1-8b (rope_theta 500000, Llama 3.1's scaled RoPE) trains,
# exports, trains 20 steps from the import, exports again; the import of a float32 export
# is the checkpoint bit for bit (the same first loss), a bfloat16 one its rounding.
small="model_name=llama3.1-8b override_model_config=true base_emb_dim=64 base_num_query_heads=4 base_num_kv_heads=2
       base_mlp_dim=128 base_num_decoder_layers=2 head_dim=16 vocab_size=256 max_target_length=64 per_device_batch_size=8
       dtype=float32 dataset_type=tokens dataset_path=$dir/tokens.bin eval_dataset_path=$dir/tokens.bin
       enable_data_shuffling=false"
cd "$dir" || fail "cd"
run() { "$MTXC" run "$root/configs/base.yml" $small "$@" > log 2>&1 || { cat log; fail "run $*"; }; }
# shellcheck disable=SC2086
run steps=1 run_name=a
# shellcheck disable=SC2086
"$MTXC" export "$root/configs/base.yml" $small load_parameters_path=a/checkpoints/1 -o h1 > log 2>&1 || { cat log; fail "export a"; }
# shellcheck disable=SC2086
run steps=20 log_period=10 run_name=b load_parameters_path=h1 metrics_file=b.jsonl
first=$(sed -n 's/.*"step": 1, "learning\/loss": \([0-9.]*\).*/\1/p' b.jsonl)
last=$(sed -n 's/.*"step": 20, "learning\/loss": \([0-9.]*\).*/\1/p' b.jsonl)
awk -v a="$first" -v b="$last" 'BEGIN { exit !(b < a) }' || fail "llama3.1-8b (shrunk): loss $first -> $last did not fall"
for dtype in float32 bfloat16; do
    # shellcheck disable=SC2086
    "$MTXC" export "$root/configs/base.yml" $small load_parameters_path=b/checkpoints/20 -o h-$dtype --dtype $dtype \
        --shard-size 100KB > log 2>&1 || { cat log; fail "export b $dtype"; }
    [ -f h-$dtype/model.safetensors.index.json ] && [ -f h-$dtype/model-00002-of-0000*.safetensors ] || fail "no shards at 100KB"
done
python3 "$root/tests/hf_variants.py" equal h-float32 h-bfloat16 bf16 || fail "the bfloat16 export is not the float32 one rounded"
grep -q '"architectures":.*"LlamaForCausalLM"' h-float32/config.json && grep -q '"rope_theta":.*500000' h-float32/config.json &&
    grep -q '"rope_type":.*"llama3"' h-float32/config.json && grep -q '"torch_dtype":.*"float32"' h-float32/config.json ||
    { cat h-float32/config.json; fail "config.json"; }
for from in b/checkpoints/20 h-float32; do
    # shellcheck disable=SC2086
    run steps=1 load_parameters_path=$from metrics_file=$from.jsonl
done
same() { grep -o '"learning/loss": [^,]*, "learning/grad_norm": [^,]*' "$1"; }
[ -n "$(same h-float32.jsonl)" ] && [ "$(same b/checkpoints/20.jsonl)" = "$(same h-float32.jsonl)" ] ||
    { cat b/checkpoints/20.jsonl h-float32.jsonl; fail "the float32 export does not load as the checkpoint"; }
loss=$(sed -n 's/.*"learning\/loss": \([0-9.]*\).*/\1/p' h-float32.jsonl)
echo "llama3.1-8b shrunk: trains from its export (loss $first -> $last in 20 steps), exports again (float32 and bfloat16, in $(ls h-float32/*.safetensors | wc -l) shards); the float32 export loads as the checkpoint (loss $loss)"

# Refusals: nothing is written.
mkdir exists
out=$("$MTXC" export "$root/configs/base.yml" $small load_parameters_path=b/checkpoints/20 -o exists 2>&1) &&
    fail "export over an existing directory"
case "$out" in *"the output directory exists already (nothing is overwritten): exists"*) ;; *) fail "exists: $out" ;; esac
[ -z "$(ls exists)" ] || fail "export wrote into an existing directory"
out=$("$MTXC" export "$root/configs/base.yml" $small load_parameters_path=b/checkpoints/20 2>&1) && fail "export without -o"
case "$out" in *"export needs -o DIR"*) ;; *) fail "no -o: $out" ;; esac
out=$("$MTXC" export "$root/configs/base.yml" $small load_parameters_path=b/checkpoints/20 -o x --dtype float16 2>&1) && fail "float16"
case "$out" in *"--dtype 'float16' (bfloat16 or float32"*) ;; *) fail "dtype: $out" ;; esac
out=$("$MTXC" export "$root/configs/base.yml" $small load_parameters_path=b/checkpoints/20 -o x --shard-size 2^63 2>&1) && fail "shard size"
case "$out" in *"--shard-size '2^63'"*) ;; *) fail "shard size: $out" ;; esac
out=$("$MTXC" export "$root/configs/base.yml" model_name=gpt3-52k load_parameters_path=b/checkpoints/20 -o x 2>&1) && fail "gpt3"
case "$out" in *"decoder_block gpt3 has no mapping to Hugging Face's layout yet"*) ;; *) fail "gpt3: $out" ;; esac
[ ! -e x ] && [ -z "$(ls -d ./*.tmp-* 2>/dev/null)" ] || fail "a refused export left files"
echo "export refusals: an existing directory, no -o, a bad dtype or size, a family without a mapping; nothing written"
cd "$root" || fail "cd"

# An imported model trains (Llama 3.1's RoPE).
"$MTXC" run configs/base.yml model_name=tiny rope_type=llama3.1 dataset_type=tokens dataset_path="$dir/tokens.bin" \
    eval_dataset_path="$dir/tokens.bin" steps=20 log_period=10 load_parameters_path=$data/llama3.1-tiny \
    metrics_file="$dir/m.jsonl" > "$dir/log" 2>&1 || { cat "$dir/log"; fail "training from an import"; }
first=$(sed -n 's/.*"step": 1, "learning\/loss": \([0-9.]*\).*/\1/p' "$dir/m.jsonl")
last=$(sed -n 's/.*"step": 20, "learning\/loss": \([0-9.]*\).*/\1/p' "$dir/m.jsonl")
awk -v a="$first" -v b="$last" 'BEGIN { exit !(b < a) }' || fail "loss $first -> $last did not fall"
echo "llama3.1-tiny trains from its import: loss $first -> $last in 20 steps"

# NaN weights: a warning, not a refusal.
python3 tests/hf_variants.py $data/llama-tiny "$dir/nan" nan
first_loss llama-tiny "$dir/nan" abort_on_nan_loss=false > /dev/null || fail "NaN weights refused"
grep -q "trainer: warning: '$dir/nan' holds 1 NaN parameter values" "$dir/log" || fail "no NaN warning"

expect() {   # [MODEL=NAME] expect NAME MESSAGE DIR [key=value ...]
    local name=$1 want=$2 d=$3 out rc
    shift 3
    out=$("$MTXC" run configs/base.yml model_name="${MODEL:-tiny}" dataset_type=tokens dataset_path="$dir/tokens.bin" \
          eval_dataset_path="$dir/tokens.bin" steps=1 load_parameters_path="$d" "$@" 2>&1); rc=$?
    [ $rc -ne 0 ] || fail "$name: exit 0"
    case "$out" in *"step "*) fail "$name: trained before refusing" ;; esac
    case "$out" in *"$want"*) ;; *) fail "$name: want \"$want\", got: $out" ;; esac
}
for mode in missing extra shape dtype truncated offsets no-shard family hidden nested hugelen dotdot nanoffset; do
    python3 tests/hf_variants.py $data/llama-tiny "$dir/$mode" $mode || fail "making $mode"
done
expect missing "'$dir/missing' has no tensor model.layers.1.mlp.up_proj.weight (this program's params/layers.1.mlp.wi_1.kernel)" "$dir/missing"
expect extra "'$dir/extra/model.safetensors': tensor model.layers.9.mlp.up_proj.weight is none of this program's parameters" "$dir/extra"
expect shape "'$dir/shape/model.safetensors': tensor lm_head.weight is [64, 256], this program's params/logits_dense.kernel needs [256, 64]" "$dir/shape"
expect dtype "'$dir/dtype/model.safetensors': tensor model.norm.weight has dtype I64; mtxc reads F32, BF16 and F16" "$dir/dtype"
expect truncated "'$dir/truncated/model.safetensors': tensor model.layers.1.self_attn.v_proj.weight has data_offsets outside the file's" "$dir/truncated"
expect offsets "'$dir/offsets/model.safetensors': tensor model.norm.weight has data_offsets outside the file's" "$dir/offsets"
expect no-shard "cannot read '$dir/no-shard/model-00002-of-00002.safetensors': No such file or directory" "$dir/no-shard"
expect nested "'$dir/nested/model.safetensors': its header is not a JSON object" "$dir/nested"
expect hugelen "'$dir/hugelen/model.safetensors': its header length 9223372036854775808 is past the file's" "$dir/hugelen"
expect dotdot "weight_map gives lm_head.weight a file name that is not one file of the directory" "$dir/dotdot"
expect nanoffset "'$dir/nanoffset/model.safetensors': its header is not a JSON object" "$dir/nanoffset"
expect family "'$dir/family/config.json': \"architectures\" is [\"Qwen3ForCausalLM\"], this program's is [\"LlamaForCausalLM\"]" "$dir/family"
expect hidden "'$dir/hidden/config.json': \"hidden_size\" is 128, this program's is 64" "$dir/hidden"
expect rope "'$data/llama-tiny/config.json': \"rope_scaling\" is null, this program's is {\"rope_type\": \"llama3\"" $data/llama-tiny rope_type=llama3.1
expect full "'$data/llama-tiny' is a Hugging Face model directory: it holds parameters only" "" load_full_state_path=$data/llama-tiny
MODEL=gpt3-52k expect gpt3 "'$data/llama-tiny' is a Hugging Face model directory, and this program's model (gpt3-52k) has no Hugging Face form: decoder_block gpt3 has no mapping" \
    $data/llama-tiny override_model_config=true max_target_length=64
echo "broken Hugging Face directories: each refused naming the file and tensor; NaN weights warn"
