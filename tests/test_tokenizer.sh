#!/bin/bash
# Text through SentencePiece (tokenizer_path): a model made here with
# spm_train from the default job's text (500 pieces) tokenizes it line by
# line with bos and eos, exactly as spm_encode does (the trainer's token
# count against spm_encode's); the tiny model trains on those tokens (loss
# falls 2x in 300 steps); bad models, a vocabulary too small for the
# tokenizer, a missing bos and an unimplemented tokenizer_type are refused
# before training with a message naming the file or key.
# Usage: tests/test_tokenizer.sh MTXC (from the source root)
MTXC=$1
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
. tests/metrics.sh
text=/usr/share/common-licenses/GPL-3
spm_train --input=$text --model_prefix="$dir/gpl" --vocab_size=500 --model_type=unigram \
    --character_coverage=1.0 > "$dir/spm.log" 2>&1 || { cat "$dir/spm.log"; fail "spm_train"; }
spm_train --input=$text --model_prefix="$dir/nobos" --vocab_size=500 --bos_id=-1 > "$dir/spm.log" 2>&1 ||
    fail "spm_train without bos"
"$MTXC" build configs/tiny-text.yml override_model_config=true vocab_size=512 -o "$dir/t" > /dev/null || fail "build"

# bos + pieces + eos per non-empty line, as spm_encode cuts them
pieces=$(spm_encode --model="$dir/gpl.model" --output_format=id < $text | wc -w)
lines=$(awk 'length > 0' $text | wc -l)
want=$((pieces + 2 * lines))
"$dir/t" tokenizer_path="$dir/gpl.model" steps=300 log_period=100 metrics_file="$dir/m.jsonl" > "$dir/log" 2>&1 ||
    { cat "$dir/log"; fail "train"; }
grep -q "data: text through SentencePiece '$dir/gpl.model': $want training tokens" "$dir/log" ||
    { grep data: "$dir/log"; fail "token count differs from spm_encode's $want"; }
first=$(sed -n 's/.*"step": 1, "learning\/loss": \([0-9.]*\).*/\1/p' "$dir/m.jsonl")
last=$(sed -n 's/.*"step": 300, "learning\/loss": \([0-9.]*\).*/\1/p' "$dir/m.jsonl")
awk -v a="$first" -v b="$last" 'BEGIN { exit !(b < a / 2) }' || fail "loss $first -> $last did not halve"
echo "sentencepiece: $want tokens as spm_encode cuts them; loss $first -> $last in 300 steps"
"$dir/t" tokenizer_path="$dir/gpl.model" add_bos=false add_eos=false steps=1 > "$dir/log" 2>&1 || fail "no bos/eos"
grep -q "$pieces training tokens" "$dir/log" || fail "add_bos=false add_eos=false: want $pieces tokens"

expect() {   # expect NAME MESSAGE ARGS...
    local name=$1 want=$2 out rc
    shift 2
    out=$(timeout 300 "$dir/t" steps=2 "$@" 2>&1); rc=$?
    [ $rc -eq 2 ] || fail "$name: exit $rc, want 2"
    case "$out" in *"step "*) fail "$name: trained before refusing" ;; esac
    case "$out" in *"$want"*) ;; *) fail "$name: want \"$want\", got: $out" ;; esac
}
head -c 0 /dev/null > "$dir/empty.model"
head -c 4096 /dev/urandom > "$dir/random.model"
head -c 1000 "$dir/gpl.model" > "$dir/truncated.model"
expect missing "cannot read tokenizer model '$dir/none.model': No such file or directory" \
    tokenizer_path="$dir/none.model"
expect directory "cannot read tokenizer model '$dir': it is a directory" tokenizer_path="$dir"
mkfifo "$dir/fifo"   # would block the open
expect fifo "cannot read tokenizer model '$dir/fifo': it is a FIFO (named pipe), not a regular file" \
    tokenizer_path="$dir/fifo"
truncate -s 3G "$dir/big.model"   # protobuf aborts past 2 GiB
expect big "tokenizer model '$dir/big.model' has 3221225472 bytes; a SentencePiece model is under 2 GiB" \
    tokenizer_path="$dir/big.model"
for bad in empty random truncated; do
    expect "$bad" "tokenizer_path '$dir/$bad.model' is not a SentencePiece model" tokenizer_path="$dir/$bad.model"
done
"$MTXC" build configs/tiny-text.yml -o "$dir/small" > /dev/null || fail "build vocab 256"
out=$("$dir/small" tokenizer_path="$dir/gpl.model" steps=2 2>&1)
case "$out" in *"tokenizer '$dir/gpl.model' has 500 pieces but vocab_size is 256"*) ;; *) fail "vocab: $out" ;; esac
expect nobos "tokenizer '$dir/nobos.model' has no bos piece: set add_bos=false" tokenizer_path="$dir/nobos.model"
expect tiktoken "tiktoken file '$dir/gpl.model', line 2: not \"base64-token rank\"" tokenizer_path="$dir/gpl.model" \
    tokenizer_type=tiktoken
expect choice "tokenizer_type" tokenizer_path="$dir/gpl.model" tokenizer_type=bpe
echo "tokenizer: bad models and settings refused"
