#!/bin/bash
# Importing a Hugging Face checkpoint against the disk's own speed: a
# qwen3-0.6b model with random weights (PATH export without a load path
# writes the initial parameters) as BF16 shards (1.2 GB), then each round:
# the page cache dropped (as root; otherwise every run is warm, and the
# result line says so), `cat` of the shards to /dev/null timed, the cache
# dropped again, and the trainer's import of the directory (its "parameters
# from DIR: ... in T s" line: config.json, headers, every tensor read,
# widened and placed). Medians of ROUNDS; the ratio is import / cat. On
# this kind of VM a process that holds gigabytes reads files much more
# slowly than a small one (measured: the same sequential preads 0.54 s, or
# 2.1-2.5 s with 7 GB held; cat run from that process as a child stays
# fast), and an import must hold the trainer's state: so a second baseline
# reads the shards in file order, 1 MB at a time, from a process that holds
# and has touched as many bytes as the state.
# Usage: tools/bench/hf_import.sh [ROUNDS]   (default 3; from the source root after building; ~10 GB of memory)
set -e
ROUNDS=${1:-3}
dir=$(mktemp -d); trap 'rm -rf "$dir"' EXIT
cfg="configs/base.yml model_name=qwen3-0.6b override_model_config=true per_device_batch_size=1 max_target_length=64
     max_prefill_predict_length=64"
echo "CPU: $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1), $(nproc) CPUs; disk: $(df -h "$dir" | awk 'NR == 2 {print $1}')"
# shellcheck disable=SC2086
build/mtxc build $cfg -o "$dir/t" > /dev/null
(cd "$dir" && ./t export -o hf --shard-size 500MB > /dev/null)
bytes=$(cat "$dir"/hf/*.safetensors | wc -c)
can_drop=$([ -w /proc/sys/vm/drop_caches ] && echo 1 || echo 0)
drop() { sync; [ "$can_drop" = 1 ] && echo 3 > /proc/sys/vm/drop_caches || true; }
median() { sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }
for _ in $(seq "$ROUNDS"); do
    drop
    t0=$(date +%s.%N); cat "$dir"/hf/*.safetensors > /dev/null; t1=$(date +%s.%N)
    echo "$t1 $t0" | awk '{print $1 - $2}' >> "$dir/cat"
    drop
    line=$(cd "$dir" && ./t steps=1 log_period=1 load_parameters_path=hf 2>&1 | grep "^parameters from hf: ")
    echo "$line" | sed -n 's/.* in \([0-9.]*\) s)$/\1/p' >> "$dir/import"
    state=$(echo "$line" | sed -n 's/.*(\([0-9.]*\) MB in .*/\1/p')
    drop
    python3 -c "
import glob, os, sys, time
held = bytearray(int(float(sys.argv[1]) * 1e6))
for i in range(0, len(held), 4096): held[i] = 1
buf = memoryview(bytearray(1 << 20))
t = time.time()
for f in sorted(glob.glob('$dir/hf/*.safetensors')):
    fd, at = os.open(f, os.O_RDONLY), 0
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
    while (n := os.preadv(fd, [buf], at)) > 0: at += n
    os.close(fd)
print(time.time() - t)" "${state:-0}" >> "$dir/held"
done
c=$(median < "$dir/cat"); i=$(median < "$dir/import"); h=$(median < "$dir/held")
awk -v b="$bytes" -v c="$c" -v i="$i" -v h="$h" -v s="${state:-0}" -v cold="$can_drop" 'BEGIN {
    printf "import of %.2f GB of BF16 shards (qwen3-0.6b, %s page cache): mtxc %.2f s (%.0f MB/s); cat %.2f s (%.0f MB/s): %.2fx cat; a reader holding %.1f GB as the state: %.2f s: %.2fx that\n",
        b / 1e9, cold == 1 ? "cold" : "warm: not root, the cache cannot be dropped;", i, b / 1e6 / i, c, b / 1e6 / c, i / c,
        s / 1e3, h, i / h }'
