#!/bin/sh
# Checkpoints at disk speed: for MODEL's state (default gpt2-124m, 1.49 GB of
# float32 params and Adam moments), in one run, medians of ROUNDS:
#  * a synchronous save (write, checksum, fsync, rename) next to
#    `dd conv=fsync` of the same bytes into the same directory;
#  * a load (read, checksum, place) next to `dd` reading the same file
#    (each from the disk: the save leaves nothing in the page cache, and
#    dd reads it first);
#  * the wall time of STEPS steps (batch BATCH x SEQ) with checkpoint_period
#    STEPS/2 and async_checkpointing on, and off, against the same run
#    without checkpoints.
# The directory is on the disk of DIR (default: the current directory).
# Usage: tools/bench/checkpoint.sh [MODEL [ROUNDS [STEPS [BATCH [SEQ [DIR]]]]]]
#        default: gpt2-124m 3 10 4 256 .   (run from the source root after building)
set -e
MODEL=${1:-gpt2-124m}; ROUNDS=${2:-3}; STEPS=${3:-10}; BATCH=${4:-4}; SEQ=${5:-256}; DIR=${6:-.}
dir=$(mktemp -d -p "$DIR" mtxc-bench.XXXXXX); trap 'rm -rf "$dir"' EXIT
echo "CPU: $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1), $(nproc) CPUs here"
echo "disk of $dir: $(df -h "$dir" | awk 'NR == 2 {print $1 ", " $4 " free"}')"
build/mtxc build configs/base.yml model_name="$MODEL" override_model_config=true per_device_batch_size="$BATCH" max_target_length="$SEQ" \
    -o "$dir/t" > /dev/null
cd "$dir"
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { print b - a }'; }

r=0
while [ $r -lt "$ROUNDS" ]; do
    ./t steps=1 run_name=s$r async_checkpointing=false > save$r.log
    sed -n 's/^saved checkpoint .*, \([0-9.]*\) s)$/\1/p' save$r.log >> save.txt
    f=s$r/checkpoints/1/state.safetensors
    t0=$(now); dd if="$f" of=/dev/null bs=8M 2> /dev/null; since "$t0" >> ddr.txt
    t0=$(now); dd if="$f" of=dd$r.bin bs=8M conv=fsync 2> /dev/null; since "$t0" >> ddw.txt
    ./t steps=1 run_name=s$r > load$r.log
    sed -n 's/^resuming from .* in \([0-9.]*\) s)$/\1/p' load$r.log >> load.txt
    rm -rf dd$r.bin
    r=$((r + 1))
done
bytes=$(stat -c %s s0/checkpoints/1/state.safetensors)
awk -v b="$bytes" -v s="$(median < save.txt)" -v w="$(median < ddw.txt)" -v l="$(median < load.txt)" \
    -v rd="$(median < ddr.txt)" -v m="$MODEL" 'BEGIN {
    printf "%s state: %.1f MB\n", m, b / 1e6
    printf "  save (sync):  %.2f s (%.2f GB/s); dd conv=fsync of the same bytes: %.2f s; save / dd = %.2f\n", s, b / s / 1e9, w, s / w
    printf "  load:         %.2f s (%.2f GB/s); dd read of the same file: %.2f s; load / dd = %.2f\n", l, b / l / 1e9, rd, l / rd
}'
rm -rf s[0-9]*

run() {   # run NAME ARGS: the wall time of the whole trainer process, seconds
    name=$1; shift
    t0=$(now); ./t steps="$STEPS" "$@" > "$name.log"; since "$t0"
}
r=0
while [ $r -lt "$ROUNDS" ]; do
    run none enable_checkpointing=false >> none.txt
    run async run_name=a$r checkpoint_period=$((STEPS / 2)) >> async.txt
    run sync run_name=y$r checkpoint_period=$((STEPS / 2)) async_checkpointing=false >> sync.txt
    rm -rf a$r y$r
    r=$((r + 1))
done
grep "^saved" async.log | sed 's/^/  async: /'
grep "^saved" sync.log | sed 's/^/  sync:  /'
awk -v n="$(median < none.txt)" -v a="$(median < async.txt)" -v s="$(median < sync.txt)" -v k="$STEPS" 'BEGIN {
    printf "%d steps, checkpoint_period %d (two saves), wall time of the trainer:\n", k, k / 2
    printf "  no checkpoints: %.1f s\n  async saves:    %.1f s (%.3fx)\n  sync saves:     %.1f s (%.3fx)\n", n, a, a / n, s, s / n
}'
