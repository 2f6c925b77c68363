#!/bin/bash
# Decoding from checkpoints (mtxc decode, a built trainer's decode mode):
# * the default job (200 steps, bytes): greedy output equals between two
#   runs, between mtxc decode and the built trainer, and starts with the
#   prompt; the end-of-training sample is the same continuation;
# * topk, nucleus, composite and weighted runs are reproducible by seed;
# * configs/tiny-spm.yml with the SentencePiece model its comment makes
#   (spm_train): train on its tokens, decode text with it (trainer and
#   mtxc decode alike);
# * gpt3 (learned positions) decodes token ids;
# * refused with a message: no checkpoint, a prompt longer than the
#   prefill, topk without top_k, nucleus_p out of range, an empty prompt,
#   a multi-device trainer.
# Usage: tests/test_decode.sh MTXC [nojit]   (from the source root)
MTXC=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
NOJIT=${2:-}
root=$PWD
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cd "$dir" || exit 1
fail() { echo "FAIL: $*"; exit 1; }
cfg="$root/configs/tiny-text.yml"
"$MTXC" build "$cfg" -o t > /dev/null || fail "build"
./t steps=200 log_period=100 run_name=r > train.log 2>&1 || { cat train.log; fail "train"; }
ck=r/checkpoints/200
[ -d $ck ] || fail "no checkpoint $ck"
sample=$(sed -n 's/^sample (greedy): //p' train.log)
[ -n "$sample" ] || fail "training printed no sample"

./t decode load_parameters_path=$ck > a.txt 2> a.err || { cat a.err; fail "trainer decode"; }
./t decode load_parameters_path=$ck > b.txt 2>/dev/null || fail "trainer decode again"
cmp -s a.txt b.txt || fail "greedy decoding differs between runs"
case "$(cat a.txt)" in "This program is"*) ;; *) fail "output does not start with the prompt: $(cat a.txt)" ;; esac
grep -q "decode: greedy, 49 tokens after a 15-token prompt" a.err || { cat a.err; fail "greedy: want 49 tokens"; }
# the sample stops at 64 new tokens, the decode at max_target_length: the same greedy path
case "$(cat a.txt)" in "$sample"*) ;; *) fail "decode '$(cat a.txt)' does not continue the sample '$sample'" ;; esac
if [ -z "$NOJIT" ]; then
    "$MTXC" decode "$cfg" load_parameters_path=$ck > j.txt 2> j.err || { cat j.err; fail "mtxc decode"; }
    cmp -s a.txt j.txt || fail "mtxc decode differs from the built trainer: $(cat j.txt) / $(cat a.txt)"
fi
echo "greedy: $(head -c 70 a.txt)"

for s in "topk decode_sampling_top_k=5" "nucleus decode_sampling_nucleus_p=0.9" \
         "composite decode_sampling_top_k=10 decode_sampling_nucleus_p=0.8" "weighted decode_sampling_temperature=0.7"; do
    set -- $s
    # shellcheck disable=SC2086
    ./t decode load_parameters_path=$ck decode_sampling_strategy=$s decode_sampling_seed=5 > s1.txt 2>/dev/null ||
        fail "$1"
    # shellcheck disable=SC2086
    ./t decode load_parameters_path=$ck decode_sampling_strategy=$s decode_sampling_seed=5 > s2.txt 2>/dev/null
    cmp -s s1.txt s2.txt || fail "$1 with one seed differs between runs"
done
echo "topk, nucleus, composite, weighted: reproducible by seed"

expect() {   # expect NAME MESSAGE ARGS...
    local name=$1 want=$2 out rc
    shift 2
    out=$(timeout 300 ./t decode "$@" 2>&1); rc=$?
    [ $rc -eq 2 ] || fail "$name: exit $rc, want 2 ($out)"
    case "$out" in *"$want"*) ;; *) fail "$name: want \"$want\", got: $out" ;; esac
}
expect none "decoding needs a checkpoint: set load_parameters_path"
expect missing "r/checkpoints/7" load_parameters_path=r/checkpoints/7
mkdir -p fifo/checkpoints/1 && mkfifo fifo/checkpoints/1/state.safetensors && cp $ck/meta.json fifo/checkpoints/1/
expect fifo "cannot read checkpoint fifo/checkpoints/1/state.safetensors: it is a FIFO" \
    load_parameters_path=fifo/checkpoints/1
expect long "prompt is 70 tokens, more than max_prefill_predict_length 64" load_parameters_path=$ck \
    prompt="$(printf '%070d' 0)"
expect empty "prompt is empty" load_parameters_path=$ck prompt=
expect topk "decode_sampling_top_k > 0" load_parameters_path=$ck decode_sampling_strategy=topk
expect nucleus "decode_sampling_nucleus_p in (0, 1]" load_parameters_path=$ck decode_sampling_strategy=nucleus
expect strategy "decode_sampling_strategy" load_parameters_path=$ck decode_sampling_strategy=beam
expect tiktoken "cannot read tiktoken file 'gpl.model': No such file or directory" load_parameters_path=$ck \
    tokenizer_path=gpl.model tokenizer_type=tiktoken
"$MTXC" build "$root/configs/base.yml" model_name=tiny override_model_config=true ici_data_parallelism=2 per_device_batch_size=2 -o t2 > /dev/null ||
    fail "build 2 devices"
out=$(mpirun --allow-run-as-root --oversubscribe -np 2 ./t2 decode load_parameters_path=$ck 2>&1)
case "$out" in *"decoding runs on one device"*) ;; *) fail "2 devices: $out" ;; esac
echo "decode: bad settings refused"

# SentencePiece: configs/tiny-spm.yml with the model its comment makes
text=/usr/share/common-licenses/GPL-3
spm_train --input=$text --model_prefix=gpl --vocab_size=256 > spm.log 2>&1 || fail "spm_train"
"$MTXC" build "$root/configs/tiny-spm.yml" -o ts > /dev/null || fail "build tiny-spm"
./ts steps=300 log_period=100 run_name=s > s.log 2>&1 || { cat s.log; fail "train tiny-spm"; }
grep -q "^sample (greedy): GNU General ." s.log || { tail -3 s.log; fail "tiny-spm: no sample"; }
./ts decode load_parameters_path=s/checkpoints/300 > sp.txt 2> sp.err || { cat sp.err; fail "decode tiny-spm"; }
case "$(cat sp.txt)" in "GNU General "?*) ;; *) fail "sentencepiece output: $(cat sp.txt)" ;; esac
pieces=$(echo "GNU General" | spm_encode --model=gpl.model --output_format=id | wc -w)
grep -q "after a $((pieces + 1))-token prompt" sp.err || { cat sp.err; fail "want bos + $pieces pieces"; }
if [ -z "$NOJIT" ]; then
    "$MTXC" decode "$root/configs/tiny-spm.yml" load_parameters_path=s/checkpoints/300 > spj.txt 2> /dev/null ||
        fail "mtxc decode tiny-spm"
    cmp -s sp.txt spj.txt || fail "mtxc decode differs from the trainer with tiny-spm"
fi
echo "sentencepiece: $(head -c 70 sp.txt)"
# A vocabulary larger than the tokenizer's (512 > 256 pieces: a padded
# vocabulary), nearly untrained: ids past the tokenizer are never chosen.
"$MTXC" build "$root/configs/tiny-spm.yml" override_model_config=true vocab_size=512 -o tv > /dev/null || fail "build vocab 512"
./tv steps=1 run_name=v > /dev/null 2>&1 || fail "train vocab 512"
./tv decode load_parameters_path=v/checkpoints/1 decode_sampling_strategy=weighted > v.txt 2> v.err || { cat v.err; fail "decode vocab 512"; }
case "$(cat v.txt)" in "GNU General"*"<|id "*) fail "an id past the tokenizer: $(cat v.txt)" ;; "GNU General"?*) ;;
    *) fail "vocab 512: $(cat v.txt)" ;; esac
# Parameters that are all NaN: a warning, once.
"$MTXC" build "$cfg" override_model_config=true learning_rate=1e12 -o tn > /dev/null || fail "build diverging"
./tn steps=6 run_name=n abort_on_nan_loss=false > /dev/null 2>&1 || fail "diverging run"
./tn decode load_parameters_path=n/checkpoints/6 > n.txt 2> n.err || { cat n.err; fail "decode NaN"; }
[ "$(grep -c "warning: the logits at position 14 are not finite (NaN)" n.err)" = 1 ] || { cat n.err; fail "NaN: want one warning"; }
echo "decode: ids past the tokenizer never chosen, NaN parameters warned about"

# gpt3: learned positions; synthetic data, so the prompt and the output are token ids
"$MTXC" build "$root/configs/base.yml" model_name=gpt3-52k override_model_config=true max_target_length=64 per_device_batch_size=4 steps=50 -o tg > /dev/null || fail "build gpt3"
./tg run_name=g > g.log 2>&1 || { cat g.log; fail "train gpt3"; }
./tg decode load_parameters_path=g/checkpoints/50 prompt="3 18 93" > g.txt 2> g.err || { cat g.err; fail "decode gpt3"; }
"$MTXC" build "$root/configs/base.yml" model_name=gpt3-52k override_model_config=true max_target_length=64 max_prefill_predict_length=64 \
    per_device_batch_size=4 -o tf > /dev/null || fail "build full prefill"
./tf decode load_parameters_path=g/checkpoints/50 prompt="$(seq 1 64 | tr '\n' ' ')" > /dev/null 2> f.err ||
    { cat f.err; fail "a prompt of every position"; }
grep -q "1 tokens after a 64-token prompt" f.err || { cat f.err; fail "full prefill: want one token after it"; }
case "$(cat g.txt)" in "3 18 93 | "*) ;; *) fail "gpt3 output: $(cat g.txt)" ;; esac
echo "gpt3-52k: $(head -c 70 g.txt)"
