#!/bin/sh
# Data: bad token and text files are refused before training starts with a
# message naming the file; the default job (configs/tiny-text.yml) reaches an
# eval loss below 2.0 nats per byte, in bf16 within 0.03 of float32, with
# attention flash within 0.01 of dot_product; token
# files train like the text they hold.
# Usage: tests/test_data.sh MTXC [nojit]   (from the source root; nojit: mtxc
# has no `run`, so the default job runs as a built trainer, which computes the
# same bits: tests/test_jit.sh)
MTXC=$1
NOJIT=${2:-}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
fails=0
"$MTXC" build configs/base.yml model_name=tiny override_model_config=true -o "$dir/trainer" > /dev/null || { echo "FAIL: build"; exit 1; }
expect() {   # expect NAME MESSAGE ARGS...
    name=$1; want=$2; shift 2
    out=$(timeout 300 "$dir/trainer" steps=2 "$@" 2>&1); rc=$?
    if [ $rc -ne 2 ]; then echo "FAIL $name: exit $rc, want 2"; fails=$((fails + 1)); return; fi
    case "$out" in *"step "*) echo "FAIL $name: trained before refusing"; fails=$((fails + 1)); return ;; esac
    case "$out" in *"$want"*) ;; *) printf 'FAIL %s: want "%s", got:\n%s\n' "$name" "$want" "$out"; fails=$((fails + 1)) ;; esac
}
header() {   # header MAGIC VERSION COUNT: 256 little-endian int32
    python3 -c "import struct,sys; sys.stdout.buffer.write(struct.pack('<256i', $1, $2, $3, *([0]*253)))"
}
python3 tools/text_to_tokens.py /usr/share/common-licenses/GPL-3 -o "$dir/good.bin" > /dev/null
head -c 600 "$dir/good.bin" > "$dir/short.bin"
{ header 20240520 1 5000; head -c 100 /dev/zero; } > "$dir/truncated.bin"
{ header 12345 1 100; head -c 200 /dev/zero; } > "$dir/magic.bin"
{ header 20240520 1 200; python3 -c "import struct,sys; sys.stdout.buffer.write(struct.pack('<200H', *([7]*199 + [300])))"; } > "$dir/vocab.bin"
{ header 20240520 1 20; head -c 40 /dev/zero; } > "$dir/few.bin"
: > "$dir/empty.txt"
expect missing "cannot read data file '$dir/nope.bin': No such file or directory" dataset_type=tokens dataset_path="$dir/nope.bin"
expect short "token file '$dir/short.bin' is 600 bytes, shorter than its 1024-byte header" dataset_type=tokens dataset_path="$dir/short.bin"
expect truncated "token file '$dir/truncated.bin' is truncated or corrupt: its header says 5000 tokens (10000 bytes) but 100 bytes follow it" dataset_type=tokens dataset_path="$dir/truncated.bin"
expect magic "token file '$dir/magic.bin' has magic 12345 version 1; expected 20240520 version 1 (uint16) or 20240801 version 7 (uint32)" dataset_type=tokens dataset_path="$dir/magic.bin"
expect vocab "token file '$dir/vocab.bin': token 199 is 300, outside vocab_size 256" dataset_type=tokens dataset_path="$dir/vocab.bin"
expect few "training data from '$dir/few.bin' has 18 tokens, fewer than one sequence of max_target_length + 1 = 65" dataset_type=tokens dataset_path="$dir/few.bin"
expect empty_text "training data from '$dir/empty.txt' has 0 tokens" dataset_type=text dataset_path="$dir/empty.txt"
expect no_path "dataset_type text needs dataset_path" dataset_type=text
mkfifo "$dir/fifo"   # would block the open
expect fifo "cannot read data file '$dir/fifo': it is a FIFO (named pipe), not a regular file" dataset_type=tokens dataset_path="$dir/fifo"
expect eval_fifo "cannot read data file '$dir/fifo': it is a FIFO" dataset_type=text dataset_path=/usr/share/common-licenses/GPL-3 eval_dataset_path="$dir/fifo"
expect device "cannot read data file '/dev/zero': it is a device or socket, not a regular file" dataset_type=text dataset_path=/dev/zero
expect bad_eval "cannot read data file '$dir/none.txt'" dataset_type=text dataset_path=/usr/share/common-licenses/GPL-3 eval_dataset_path="$dir/none.txt"

# Token files hold the same stream as the text: the same losses.
"$dir/trainer" steps=5 log_period=1 dataset_type=tokens dataset_path="$dir/good.bin" | grep '^step' > "$dir/a"
"$dir/trainer" steps=5 log_period=1 dataset_type=text dataset_path=/usr/share/common-licenses/GPL-3 | grep '^step' > "$dir/b"
[ "$(cut -d'|' -f2 "$dir/a")" = "$(cut -d'|' -f2 "$dir/b")" ] || { echo "FAIL: token file and text differ"; fails=$((fails + 1)); }

# The default job: eval loss below 2.0 nats per byte, and early stop at target_eval_loss.
job() {   # the README's first command, or its built equivalent
    if [ -z "$NOJIT" ]; then "$MTXC" run configs/tiny-text.yml "$@"; return; fi
    [ -x "$dir/job" ] || "$MTXC" build configs/tiny-text.yml -o "$dir/job" > /dev/null || return 1
    "$dir/job" "$@"
}
job metrics_file="$dir/m.jsonl" > "$dir/job.log" 2>&1 || { cat "$dir/job.log"; echo "FAIL: default job"; exit 1; }
grep '^eval' "$dir/job.log"
final=$(awk '/^eval/ {l = $5} END {print l}' "$dir/job.log")
awk -v l="$final" 'BEGIN {exit !(l > 0 && l < 2.0)}' || { echo "FAIL: default job's eval loss $final is not below 2.0"; fails=$((fails + 1)); }
# The default job runs in bf16 (MaxText's dtype): within 0.03 nats per byte of float32.
if [ -z "$NOJIT" ]; then "$MTXC" run configs/tiny-text.yml dtype=float32; else
    "$MTXC" build configs/tiny-text.yml dtype=float32 -o "$dir/job32" > /dev/null && "$dir/job32"; fi > "$dir/job32.log" 2>&1 ||
    { cat "$dir/job32.log"; echo "FAIL: default job in float32"; exit 1; }
final32=$(awk '/^eval/ {l = $5} END {print l}' "$dir/job32.log")
awk -v b="$final" -v f="$final32" 'BEGIN { d = b - f; if (d < 0) d = -d
    printf "default job: eval loss bf16 %s, float32 %s\n", b, f; exit !(f > 0 && d <= 0.03) }' ||
    { echo "FAIL: the bf16 default job strays from float32"; fails=$((fails + 1)); }
# attention: flash (the fused kernel) trains it to dot_product's eval loss, within 0.01.
job attention=flash > "$dir/flash.log" 2>&1 || { cat "$dir/flash.log"; echo "FAIL: default job with flash"; exit 1; }
awk -v d="$final" -v f="$(awk '/^eval/ {l = $5} END {print l}' "$dir/flash.log")" 'BEGIN { x = d - f; if (x < 0) x = -x
    printf "default job: eval loss dot_product %s, flash %s\n", d, f; exit !(f > 0 && x <= 0.01) }' ||
    { echo "FAIL: flash strays from dot_product on the default job"; fails=$((fails + 1)); }
grep -q '"eval/avg_loss"' "$dir/m.jsonl" || { echo "FAIL: no eval/avg_loss in metrics_file"; fails=$((fails + 1)); }
grep -q '"perf/mfu"' "$dir/m.jsonl" || { echo "FAIL: no perf/mfu in metrics_file"; fails=$((fails + 1)); }
tools/plot_metrics.sh "$dir/m.jsonl" "$dir/loss.png" > /dev/null &&
    [ "$(head -c 8 "$dir/loss.png" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ] ||
    { echo "FAIL: plot_metrics.sh wrote no PNG"; fails=$((fails + 1)); }
job target_eval_loss=1.8 > "$dir/stop.log" 2>&1
grep -q "reached target_eval_loss 1.8 at step 500: stopping" "$dir/stop.log" || { cat "$dir/stop.log"; echo "FAIL: early stop"; fails=$((fails + 1)); }
echo "data: $fails failures"
[ $fails -eq 0 ]
