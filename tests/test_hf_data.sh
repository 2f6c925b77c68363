#!/bin/bash
# dataset_type hf with local JSON files (hf_path json, hf_train_files a
# glob): each example's "text" through the tokenizer between bos and eos,
# cut to max_target_length tokens (eos kept), packed first-fit into rows with
# segment ids (packing true, MaxText's default) or one example a row. The
# data line's counts (examples, tokens, examples cut) equal spm_encode's
# over the same texts; with the parameters kept, the whole eval set's loss
# is the same packed or not (each example once, none seeing another); JSON Lines (blank lines skipped) and JSON array files; the model
# trains and a restart resumes the example stream exactly; every bad input is
# refused naming file:line (or element) and key, before training.
# Usage: tests/test_hf_data.sh MTXC (from the source root)
MTXC=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
root=$PWD
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cd "$dir" || exit 1
fail() { echo "FAIL: $*"; exit 1; }
spm_train --input=/usr/share/common-licenses/GPL-3 --model_prefix=gpl --vocab_size=256 > spm.log 2>&1 || fail "spm_train"
mkdir -p data
python3 - <<'PY'
import json, random
random.seed(7)
words = "the program is free software you can redistribute it and or modify under terms of license".split()
texts = [" ".join(random.choice(words) for _ in range(random.randint(2, 60))) for _ in range(120)]
with open("data/a.jsonl", "w") as f:
    for i, t in enumerate(texts[:70]):
        f.write(json.dumps({"text": t, "id": i}) + "\n")
        if i % 20 == 0:
            f.write("   \n")                      # blank lines are skipped
with open("data/b.json", "w") as f:                 # a JSON array file
    json.dump([{"text": t} for t in texts[70:]], f, indent=1)
with open("texts.txt", "w") as f:                   # in glob order: a.jsonl, b.json
    f.write("\n".join(texts) + "\n")
PY
cfg="$root/configs/base.yml model_name=tiny dataset_type=hf hf_path=json tokenizer_path=gpl.model
     learning_rate_schedule_steps=30"
# shellcheck disable=SC2086
"$MTXC" build $cfg -o t > /dev/null || fail "build"

# The counts, from spm_encode (bos + ids + eos an example, at most 64; the last tenth held out for eval).
spm_encode --model=gpl.model --output_format=id < texts.txt > ids.txt || fail "spm_encode"
want=$(python3 - <<'PY'
lens = [len(l.split()) + 2 for l in open("ids.txt")]
cut = len(lens) - max(len(lens) // 10, 1)
print(f"{cut} training examples ({sum(min(n, 64) for n in lens[:cut])} tokens), {len(lens) - cut} eval; "
      f"{sum(n > 64 for n in lens)} longer than max_target_length = 64 tokens, cut there (eos kept)")
PY
)
./t hf_train_files='data/*' steps=30 log_period=10 eval_interval=30 eval_steps=1 run_name=r metrics_file=m.jsonl \
    > log 2>&1 || { cat log; fail "train"; }
grep -q "^data: hf json 'data/\*' (2 files) through SentencePiece 'gpl.model': $want; packed first-fit" log ||
    { grep "^data" log; fail "want: $want"; }
first=$(sed -n 's/.*"step": 1, "learning\/loss": \([0-9.]*\).*/\1/p' m.jsonl)
last=$(sed -n 's/.*"step": 30, "learning\/loss": \([0-9.]*\).*/\1/p' m.jsonl)
awk -v a="$first" -v b="$last" 'BEGIN { exit !(b < a - 1) }' || fail "loss $first -> $last did not fall"
grep -q "^eval  *30 | loss" log || fail "no eval"
echo "hf json: $want (as spm_encode); loss $first -> $last in 30 steps"

# Resume: 30 steps == 15, a restart to 30 (the example stream continues where it stopped).
./t hf_train_files='data/*' steps=15 log_period=100 run_name=s metrics_file=s.jsonl > /dev/null 2>&1 || fail "to 15"
./t hf_train_files='data/*' steps=30 log_period=100 run_name=s metrics_file=s.jsonl > /dev/null 2>&1 || fail "to 30"
learning() { grep -v eval "$1" | sed 's/, "perf.*//'; }
./t hf_train_files='data/*' steps=30 log_period=100 run_name=u metrics_file=u.jsonl > /dev/null 2>&1 || fail "30"
cmp -s <(learning s.jsonl) <(learning u.jsonl) || fail "the resumed run differs"
echo "hf json: a run resumed at step 15 equals the uninterrupted one (packed rows)"

# Packed or one example a row: with learning_rate 0 the eval loss over the whole eval set (12
# examples, 3 rows of 4 unpacked) is the same.
# shellcheck disable=SC2086
"$MTXC" build $cfg override_model_config=true learning_rate=0 eval_per_device_batch_size=4 -o t0 > /dev/null ||
    fail "build lr 0"
for packing in true false; do
    ./t0 hf_train_files='data/*' packing=$packing steps=1 eval_interval=1 eval_steps=-1 run_name=p$packing \
        metrics_file=p$packing.jsonl > p$packing.log 2>&1 || { cat p$packing.log; fail "packing=$packing"; }
done
p=$(sed -n 's/.*"eval\/avg_loss": \([0-9.e+-]*\).*/\1/p' ptrue.jsonl)
u=$(sed -n 's/.*"eval\/avg_loss": \([0-9.e+-]*\).*/\1/p' pfalse.jsonl)
awk -v a="$p" -v b="$u" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(b > 0 && d <= 1e-5 * b) }' ||
    fail "eval loss packed $p, one example a row $u"
np=$(sed -n 's/^eval .* | \([0-9]*\) batches$/\1/p' ptrue.log)
[ "$(sed -n 's/^eval .* | \([0-9]*\) batches$/\1/p' pfalse.log)" = 3 ] && [ "$np" -lt 3 ] ||
    { grep eval p*.log; fail "eval batch counts"; }
echo "hf json: the eval set's loss packed into $np batches $p, one example a row in 3 batches $u"

expect() {   # expect NAME MESSAGE key=value ...
    local name=$1 want=$2 out rc
    shift 2
    out=$(./t steps=1 run_name=x "$@" 2>&1); rc=$?
    [ $rc -ne 0 ] || fail "$name: exit 0"
    case "$out" in *"step "*) fail "$name: trained before refusing" ;; esac
    case "$out" in *"$want"*) ;; *) fail "$name: want \"$want\", got: $out" ;; esac
}
printf '{"text": "fine"}\n{"text": "also fine"}\n{"text": "broken\n' > bad.jsonl
expect not-json "bad.jsonl:3: not JSON" hf_train_files=bad.jsonl
printf '{"text": "fine"}\n\n{"body": "x"}\n' > nocol.jsonl
expect no-column "nocol.jsonl:3: the example has no \"text\" (the data columns)" hf_train_files=nocol.jsonl
printf '{"text": 42}\n' > notstr.jsonl
expect not-string "notstr.jsonl:1: \"text\" is not a string" hf_train_files=notstr.jsonl
printf '[{"text": "a b c"}, ["text"]]' > arr.json
expect element "arr.json: element 1: an example must be a JSON object" hf_train_files=arr.json
python3 -c "print('[' * 100000)" > nested.json
expect nested "nested.json:1: not a JSON array of examples" hf_train_files=nested.json
python3 -c "print('{\"text\": \"ok\"}'); print('{\"text\": ' + '[' * 100000)" > deep.jsonl
expect deep "deep.jsonl:2: not JSON" hf_train_files=deep.jsonl
printf '{"text": "one"}\n' > one.jsonl
expect one "hf_train_files 'one.jsonl' has one example: give two or more, or hf_eval_files" hf_train_files=one.jsonl
expect no-match "hf_train_files 'nothing/*.jsonl' matches no file" hf_train_files='nothing/*.jsonl'
expect eval-no-match "hf_eval_files 'none.json' matches no file" hf_train_files='data/*' hf_eval_files=none.json
expect hub "hf_path 'allenai/c4': mtxc reads local JSON files" hf_train_files='data/*' hf_path=allenai/c4
expect no-files "dataset_type hf needs hf_train_files" hf_train_files=
expect no-tokenizer "dataset_type hf needs a tokenizer (tokenizer_path)" hf_train_files='data/*' tokenizer_path=
expect text-unpacked "packing: false (one example a row) applies to dataset_type hf" dataset_type=synthetic packing=false
out=$("$MTXC" build "$root/configs/base.yml" model_name=tiny 'train_data_columns=["messages"]' -o m 2>&1) &&
    fail "messages column accepted"
case "$out" in *"train_data_columns"*"messages"*) ;; *) fail "messages: $out" ;; esac
echo "hf json: bad lines, columns, types, elements, nesting, globs, hub paths refused, naming file:line"
