#!/bin/bash
# Checkpoints: exact resume (N steps == N/2, stop, restart to N: identical
# metrics and identical state files) for both pure_nnx forms with dropout and
# gradient accumulation; a stdlib Python reader; refusal of corrupt,
# truncated and mismatched checkpoints without touching them; parameter-only
# loads; pruning; an unwritable directory; restarts after SIGKILL at
# random moments continuing bit-identically; async saves (training during a
# save, a kill mid-save, the same bytes as sync); SIGTERM and SIGINT saving the
# step in flight (exit 143 / 130) and resuming to an uninterrupted run's
# bits; abort_on_nan_loss stopping before a non-finite state is saved.
# Usage: tests/test_checkpoint.sh MTXC (from the source root)
MTXC=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cd "$dir" || exit 1
root=$OLDPWD
fail() { echo "FAIL: $*"; exit 1; }
learning() { grep -v eval "$1" | sed 's/, "perf.*//'; }
common="model_name=tiny override_model_config=true dropout_rate=0.1 gradient_accumulation_steps=2 learning_rate_schedule_steps=20"
for nnx in true false; do
    # shellcheck disable=SC2086
    "$MTXC" build "$root/configs/base.yml" $common pure_nnx=$nnx -o trainer_$nnx > /dev/null || fail "build"
    ./trainer_$nnx steps=20 log_period=100 run_name=a_$nnx metrics_file=a_$nnx.jsonl > /dev/null || fail "run a"
    ./trainer_$nnx steps=10 log_period=100 run_name=b_$nnx metrics_file=b_$nnx.jsonl > /dev/null || fail "run b to 10"
    ./trainer_$nnx steps=20 log_period=100 run_name=b_$nnx metrics_file=b_$nnx.jsonl > b.log || fail "run b to 20"
    grep -q "resuming from b_$nnx/checkpoints/10: step 10" b.log || fail "did not resume: $(cat b.log)"
    cmp -s <(learning a_$nnx.jsonl) <(learning b_$nnx.jsonl) || fail "pure_nnx=$nnx: resumed metrics differ"
    cmp -s a_$nnx/checkpoints/20/state.safetensors b_$nnx/checkpoints/20/state.safetensors ||
        fail "pure_nnx=$nnx: resumed state differs"
    python3 "$root/tests/read_checkpoint.py" a_$nnx/checkpoints/20 20 || fail "python reader"
done
echo "exact resume: 20 steps == 10 + restart to 20, both pure_nnx forms, state files identical"
python3 "$root/tools/checkpoint.py" list a_false/checkpoints/20 | grep -q "^params/token_embedder.embedding .* F32 *256x64" ||
    fail "checkpoint.py list"
python3 "$root/tools/checkpoint.py" diff a_false/checkpoints/20 b_false/checkpoints/20 | grep -q "^identical" ||
    fail "checkpoint.py diff of identical checkpoints"
out=$(python3 "$root/tools/checkpoint.py" diff a_false/checkpoints/20 b_false/checkpoints/10); rc=$?
[ $rc -eq 1 ] && echo "$out" | grep -q "params/token_embedder.embedding: values differ" || fail "checkpoint.py diff: $out"

t=./trainer_false
expect() {   # expect NAME STATUS MESSAGE ARGS...
    name=$1; want_rc=$2; want=$3; shift 3
    out=$(timeout 300 $t "$@" 2>&1); rc=$?
    [ $rc -eq "$want_rc" ] || fail "$name: exit $rc, want $want_rc: $out"
    case "$out" in *"$want"*) ;; *) fail "$name: want \"$want\", got: $out" ;; esac
}
# Corrupt: one flipped byte in the data; nothing is overwritten.
cp -r b_false c && printf '\x7f' | dd of=c/checkpoints/20/state.safetensors bs=1 seek=20000 conv=notrunc 2> /dev/null
cp c/checkpoints/20/state.safetensors corrupt.copy
expect corrupt 2 "checkpoint c/checkpoints/20/state.safetensors is corrupt: tensor" steps=30 run_name=c
cmp -s corrupt.copy c/checkpoints/20/state.safetensors || fail "a refused checkpoint was modified"
[ ! -e c/checkpoints/30 ] || fail "trained past a refused checkpoint"
cp -r b_false d && truncate -s 5000 d/checkpoints/20/state.safetensors
expect truncated 2 "checkpoint d/checkpoints/20/state.safetensors is truncated or corrupt" steps=30 run_name=d
cp -r b_false e && printf 'xxxxxxxx' | dd of=e/checkpoints/20/state.safetensors bs=1 seek=0 conv=notrunc 2> /dev/null
expect header 2 "checkpoint e/checkpoints/20/state.safetensors is truncated or corrupt: its header does not fit" steps=30 run_name=e
# meta.json's fields, each wrong alone, through every load path; refused
# naming the field, files untouched.
meta_case() {   # meta_case NAME SED MESSAGE: resume, load_full_state_path and load_parameters_path
    rm -rf m && mkdir -p m/checkpoints && cp -r b_false/checkpoints/20 m/checkpoints/20
    sed -i "$2" m/checkpoints/20/meta.json
    cp m/checkpoints/20/meta.json meta.copy
    expect "$1 (resume)" 2 "$3" steps=30 run_name=m
    expect "$1 (full)" 2 "$3" steps=30 run_name=m2 load_full_state_path=m/checkpoints/20
    expect "$1 (params)" 2 "$3" steps=30 run_name=m3 load_parameters_path=m/checkpoints/20
    cmp -s meta.copy m/checkpoints/20/meta.json && [ ! -e m/checkpoints/30 ] && [ ! -e m2 ] && [ ! -e m3 ] ||
        fail "$1: a refused checkpoint was changed or trained past"
}
meta_case position 's/"data_position":\t"[0-9]*"/"data_position":\t"x"/' "meta.json: field 'data_position' must be a string of decimal digits"
meta_case position_huge 's/"data_position":\t"[0-9]*"/"data_position":\t"18446744073709551615"/' "field 'data_position' must be"
meta_case step_negative 's/"step":\t20/"step":\t-1/' "meta.json: field 'step' must be an integer >= 0"
meta_case step_other 's/"step":\t20/"step":\t19/' "meta.json: field 'step' is 19 but the directory is step 20"
meta_case format 's/mtxc-checkpoint-2/mtxc-checkpoint-9/' "meta.json: field 'format' is 'mtxc-checkpoint-9', expected 'mtxc-checkpoint-2'"
meta_case old_format 's/mtxc-checkpoint-2/mtxc-checkpoint-1/' "was written by an older mtxc (format mtxc-checkpoint-1"
meta_case algorithm 's/"XXH3-64"/"FNV-1a"/' "meta.json: field 'checksum' must be \"XXH3-64\""
meta_case no_sum '/"opt_state\/mu\/decoder_norm.scale":/d' "field 'checksums' lists"
# The whole file is checked even when only the params are loaded: a state
# missing its last bytes (optimizer moments), a tensor of the optimizer
# state flipped, bytes appended.
cp -r b_false p1 && truncate -s -4 p1/checkpoints/20/state.safetensors
expect params_truncated 2 "p1/checkpoints/20/state.safetensors is truncated or corrupt" steps=2 run_name=q1 load_parameters_path=p1/checkpoints/20
cp -r b_false p2 && size=$(stat -c %s p2/checkpoints/20/state.safetensors) &&
    printf '\x7f' | dd of=p2/checkpoints/20/state.safetensors bs=1 seek=$((size - 3)) conv=notrunc 2> /dev/null
expect params_corrupt 2 "p2/checkpoints/20/state.safetensors is corrupt: tensor" steps=2 run_name=q2 load_parameters_path=p2/checkpoints/20
cp -r b_false p3 && printf 'tail' >> p3/checkpoints/20/state.safetensors
expect appended 2 "tensors do not cover its" steps=30 run_name=p3
# The checksums are XXH3-64 as an independent tool computes them.
name=params/token_embedder.embedding
read -r begin end < <(python3 -c "import json,struct,sys; f=open(sys.argv[1],'rb'); n=struct.unpack('<Q',f.read(8))[0]; \
h=json.loads(f.read(n)); b,e=h[sys.argv[2]]['data_offsets']; print(8+n+b, e-b)" a_false/checkpoints/20/state.safetensors $name)
got=$(dd if=a_false/checkpoints/20/state.safetensors bs=4096 iflag=skip_bytes,count_bytes skip="$begin" count="$end" 2> /dev/null |
    xxhsum -H3 - | sed 's/.*= //')
grep -q "\"$name\":[[:space:]]*\"$got\"" a_false/checkpoints/20/meta.json || fail "xxhsum -H3 gives $got for $name, meta.json says otherwise"
echo "meta.json fields, whole-file checks on every load path, XXH3-64 as xxhsum: ok"
# Another model's checkpoint: the first mismatching tensor is named.
"$MTXC" build "$root/configs/base.yml" model_name=gpt3-52k override_model_config=true -o trainer_g > /dev/null
out=$(./trainer_g steps=1 run_name=a_false 2>&1); rc=$?
[ $rc -eq 2 ] || fail "mismatch: exit $rc"
case "$out" in *"checkpoint a_false/checkpoints/20/state.safetensors: tensor 'params/token_embedder.embedding' has shape [256, 64], the program expects [1024, 16]"*) ;;
    *) fail "mismatch message: $out" ;; esac
# Parameters only: a fresh optimizer at step 0.
expect params 0 "parameters from a_false/checkpoints/20: step 0" steps=2 run_name=f load_parameters_path=a_false/checkpoints/20
expect full 0 "full state from a_false/checkpoints/20: step 20" steps=22 run_name=g load_full_state_path=a_false/checkpoints/20
expect both 2 "load_parameters_path and load_full_state_path cannot both be set" steps=2 load_parameters_path=x load_full_state_path=y
# Pruning keeps the newest.
$t steps=20 run_name=h checkpoint_period=5 max_num_checkpoints_to_keep=2 > /dev/null
[ "$(ls h/checkpoints | tr '\n' ' ')" = "15 20 " ] || fail "pruning left: $(ls h/checkpoints)"
# An unwritable place: a clear error, training goes on, exit status 1.
expect unwritable 1 "cannot create checkpoint directory" steps=3 run_name=x base_output_directory=/proc/mtxc-nowhere
echo "refusals, loads, pruning: ok"

# A step moved elsewhere and linked back is never followed: pruning skips it
# (named in a notice) and a save of that step refuses to replace the link;
# the files it points at stay. A copy named 06 is not step 6.
$t steps=4 run_name=s checkpoint_period=2 > /dev/null || fail "symlinks: first run"
mv s/checkpoints/2 kept && ln -s "$PWD/kept" s/checkpoints/2 && ln -s "$PWD/kept" s/checkpoints/8
out=$($t steps=8 run_name=s checkpoint_period=2 max_num_checkpoints_to_keep=1 2>&1); rc=$?
[ $rc -eq 1 ] || fail "symlinks: exit $rc: $out"
case "$out" in *"trainer: notice: ignoring s/checkpoints/2: it is a symlink"*) ;; *) fail "symlinks: notice: $out" ;; esac
case "$out" in *"cannot move checkpoint into s/checkpoints/8: something other than a directory"*) ;;
    *) fail "symlinks: save onto a link: $out" ;; esac
[ "$(ls kept | tr '\n' ' ')" = "meta.json state.safetensors " ] || fail "symlinks: the linked files were removed: $(ls kept)"
[ "$(ls s/checkpoints | tr '\n' ' ')" = "2 6 8 " ] || fail "symlinks: left $(ls s/checkpoints)"
mv s/checkpoints/6 s/checkpoints/06
out=$($t steps=7 run_name=s 2>&1); rc=$?
[ $rc -eq 0 ] || fail "06: exit $rc: $out"
case "$out" in *"ignoring s/checkpoints/06: its name is not a step's"*) ;; *) fail "06: notice: $out" ;; esac
case "$out" in *resuming*) fail "06: resumed from a non-step: $out" ;; esac
# More steps than any listing cap: 4200 complete step directories (4199
# placeholders and a real 4200) resume from 4200, whatever readdir's order,
# and pruning to one leaves only the new 4201.
"$MTXC" build "$root/configs/base.yml" model_name=tiny override_model_config=true per_device_batch_size=1 \
    max_target_length=8 -o trainer_small > /dev/null || fail "build small"
./trainer_small steps=4200 checkpoint_period=4200 log_period=100000 run_name=many > /dev/null || fail "4200 steps"
python3 -c 'import os
for s in range(4200):
    d = "many/checkpoints/%d" % s
    os.mkdir(d)
    for f in ("meta.json", "state.safetensors"): open(d + "/" + f, "w").close()' || fail "placeholders"
out=$(./trainer_small steps=4201 log_period=100000 run_name=many max_num_checkpoints_to_keep=1 2>&1)
case "$out" in *"resuming from many/checkpoints/4200: step 4200"*) ;; *) fail "4200 checkpoints: $out" ;; esac
[ "$(ls many/checkpoints)" = 4201 ] || fail "pruning 4201 checkpoints to 1 left $(ls many/checkpoints | wc -l)"
# FIFOs where a checkpoint's files should be: refused, never waited on.
mkdir -p ff/checkpoints/3 fm/checkpoints/3
mkfifo ff/checkpoints/3/state.safetensors fm/checkpoints/3/meta.json
cp a_false/checkpoints/20/meta.json ff/checkpoints/3/
cp a_false/checkpoints/20/state.safetensors fm/checkpoints/3/
expect fifo_state 2 "cannot read checkpoint ff/checkpoints/3/state.safetensors: it is a FIFO (named pipe), not a regular file" \
    steps=4 run_name=ff
expect fifo_meta 2 "cannot read checkpoint fm/checkpoints/3/meta.json: it is a FIFO" steps=4 run_name=fm
expect fifo_params 2 "cannot read checkpoint ff/checkpoints/3/state.safetensors: it is a FIFO" steps=4 \
    load_parameters_path=ff/checkpoints/3
# A header of 200,000 zero-size entries (and as many checksums) is checked
# in n log n: refused at once, naming the missing tensor.
mkdir -p zz/checkpoints/20
python3 - a_false/checkpoints/20/meta.json zz/checkpoints/20 <<'PY' || fail "zero-size entries"
import json, struct, sys
meta = json.load(open(sys.argv[1]))
meta["checksums"] = {"z%d" % i: "2d06800538d394c2" for i in range(200000)}
json.dump(meta, open(sys.argv[2] + "/meta.json", "w"))
head = {"__metadata__": {"format": "mtxc-checkpoint-2", "step": "20"}}
head.update({"z%d" % i: {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]} for i in range(200000)})
text = json.dumps(head).encode()
open(sys.argv[2] + "/state.safetensors", "wb").write(struct.pack("<Q", len(text)) + text)
PY
expect zero_size 2 "checkpoint zz/checkpoints/20/state.safetensors has no tensor 'params/token_embedder.embedding'" \
    steps=21 run_name=zz
# A checkpoint of a 3-layer model into a 2-layer program: refused on every
# load path, naming the first tensor it would drop.
"$MTXC" build "$root/configs/base.yml" $common base_num_decoder_layers=3 -o trainer_3 > /dev/null || fail "build 3 layers"
./trainer_3 steps=2 run_name=l3 > /dev/null || fail "3 layers"
extra="checkpoint l3/checkpoints/2/state.safetensors holds tensor 'params/layers.2.pre_self_attention_layer_norm.scale', which this program does not have"
expect extra_full 2 "$extra" steps=3 load_full_state_path=l3/checkpoints/2
expect extra_params 2 "$extra" steps=3 load_parameters_path=l3/checkpoints/2
out=$("$MTXC" decode "$root/configs/base.yml" $common load_parameters_path=l3/checkpoints/2 2>&1) &&
    fail "decode of a larger model's checkpoint: $out"
case "$out" in *"$extra"*) ;; *) fail "decode extra: $out" ;; esac
echo "symlinked steps never followed, 06 is not a step, 4200 checkpoints resume from the latest: ok"

# A checkpoint from before MaxText's norm names (llama2 and mistral called
# theirs *_self_attention_norm) loads, with a notice, to the same state.
mkdir -p old/checkpoints && cp -r a_false/checkpoints/20 old/checkpoints/20
python3 - a_false/checkpoints/20 old/checkpoints/20 <<'PY' || fail "renaming a checkpoint's norms"
import json, struct, sys
old = lambda n: n.replace("_self_attention_layer_norm.", "_self_attention_norm.")
raw = open(sys.argv[1] + "/state.safetensors", "rb").read()
(hlen,) = struct.unpack("<Q", raw[:8])
head = {old(k): v for k, v in json.loads(raw[8:8 + hlen]).items()}
text = json.dumps(head).encode()
open(sys.argv[2] + "/state.safetensors", "wb").write(struct.pack("<Q", len(text)) + text + raw[8 + hlen:])
meta = json.load(open(sys.argv[1] + "/meta.json"))
meta["checksums"] = {old(k): v for k, v in meta["checksums"].items()}
json.dump(meta, open(sys.argv[2] + "/meta.json", "w"))
PY
grep -q '_self_attention_norm\.' old/checkpoints/20/state.safetensors || fail "the renamed checkpoint has no old names"
expect old_names 0 "checkpoint old/checkpoints/20/state.safetensors names its norms *_self_attention_norm" \
    steps=22 run_name=old metrics_file=old.jsonl log_period=1
./trainer_false steps=22 run_name=new load_full_state_path=a_false/checkpoints/20 metrics_file=new.jsonl log_period=1 \
    > /dev/null 2>&1 || fail "resume under the new names"
cmp -s <(learning old.jsonl) <(learning new.jsonl) || fail "old names: the resumed run differs"
echo "a checkpoint with mtxc's old norm names loads, with a notice, to the same run: ok"

# SIGKILL at random moments, 20 times, during a run that saves every step:
# each restart resumes from the last complete checkpoint; the final state
# equals an uninterrupted run's.
$t steps=40 run_name=ref checkpoint_period=1 max_num_checkpoints_to_keep=3 > /dev/null
RANDOM=7
for i in $(seq 20); do
    $t steps=40 run_name=kill checkpoint_period=1 max_num_checkpoints_to_keep=3 > /dev/null 2>&1 &
    pid=$!
    sleep "0.0$((RANDOM % 9 + 1))"
    kill -9 $pid 2> /dev/null
    wait $pid 2> /dev/null
    latest=$(ls kill/checkpoints 2> /dev/null | grep -E '^[0-9]+$' | sort -n | tail -1)
    [ -z "$latest" ] || python3 "$root/tests/read_checkpoint.py" kill/checkpoints/"$latest" > /dev/null ||
        fail "after kill $i the latest checkpoint ($latest) is unreadable"
done
$t steps=40 run_name=kill checkpoint_period=1 max_num_checkpoints_to_keep=3 > /dev/null || fail "final restart"
cmp -s ref/checkpoints/40/state.safetensors kill/checkpoints/40/state.safetensors ||
    fail "after 20 kills the final state differs from an uninterrupted run"
echo "20 SIGKILLs: latest checkpoint always readable, final state identical"

# async_checkpointing (the default): the live state is written while the
# next step computes its gradients, and that step's update waits for the
# write (MTX_SAVE_PAUSE_SECONDS holds each background write 2 s, so the
# wait shows and the save is surely in flight); a SIGKILL while the next
# save is in flight leaves the previous checkpoint the latest; the restart
# ends as the uninterrupted run.
$t steps=25 run_name=ref25 checkpoint_period=10 > /dev/null || fail "uninterrupted 25 steps"
MTX_SAVE_PAUSE_SECONDS=2 $t steps=25 log_period=1 run_name=inflight checkpoint_period=10 > inflight.log 2>&1 &
pid=$!
for _ in $(seq 100); do grep -q "^saved checkpoint inflight/checkpoints/10 " inflight.log && break; sleep 0.1; done
sleep 0.5
kill -9 $pid 2> /dev/null
wait $pid 2> /dev/null
waited=$(sed -n 's/^saved checkpoint inflight\/checkpoints\/10 (1.3 MB, [0-9.]* s in the background; the next update waited \([0-9.]*\) s)$/\1/p' inflight.log)
awk -v w="$waited" 'BEGIN { exit !(w >= 1.0) }' || fail "async: step 11's update did not wait for the write: $(cat inflight.log)"
[ "$(ls inflight/checkpoints | tr '\n' ' ')" = "10 " ] || fail "async: after a kill with save 20 in flight: $(ls -a inflight/checkpoints)"
python3 "$root/tests/read_checkpoint.py" inflight/checkpoints/10 > /dev/null || fail "async: checkpoint 10 unreadable"
$t steps=25 run_name=inflight checkpoint_period=10 > inflight2.log || fail "async: restart"
grep -q "resuming from inflight/checkpoints/10: step 10" inflight2.log || fail "async: did not resume from 10"
cmp -s ref25/checkpoints/25/state.safetensors inflight/checkpoints/25/state.safetensors ||
    fail "async: the restarted run's final state differs"
# async_checkpointing=false writes the same bytes, waiting for each save.
$t steps=25 run_name=sync25 checkpoint_period=10 async_checkpointing=false > sync.log || fail "sync run"
grep -q "^saved checkpoint sync25/checkpoints/10 (1.3 MB, [0-9.]* s)$" sync.log || fail "sync save line: $(cat sync.log)"
for step in 10 20 25; do
    cmp -s ref25/checkpoints/$step/state.safetensors sync25/checkpoints/$step/state.safetensors &&
        cmp -s <(grep -v '"run_name"\|"async_checkpointing"' ref25/checkpoints/$step/meta.json) \
            <(grep -v '"run_name"\|"async_checkpointing"' sync25/checkpoints/$step/meta.json) ||
        fail "sync and async checkpoint $step differ"
done
echo "async checkpoints: the update waits for the write ($waited s), a kill mid-save keeps the previous one, same bytes as sync"

# SIGTERM (preemption) or SIGINT mid-run: the step in flight finishes and is
# saved, exit 128 + signal; the resumed run ends where an uninterrupted one does.
"$MTXC" build "$root/configs/base.yml" model_name=tiny override_model_config=true learning_rate_schedule_steps=1000 -o long > /dev/null || fail "build"
for sig in TERM INT; do
    ./long steps=300 log_period=1000 run_name=sig_$sig metrics_file=sig_$sig.jsonl > sig.log 2>&1 &
    pid=$!
    sleep 0.6
    kill -$sig $pid
    wait $pid
    rc=$?
    want=$([ $sig = TERM ] && echo 143 || echo 130)
    [ $rc -eq "$want" ] || fail "SIG$sig: exit $rc, want $want ($(tail -2 sig.log))"
    at=$(sed -n "s/^SIG$sig at step \([0-9]*\): checkpoint saved, stopping$/\1/p" sig.log)
    [ -n "$at" ] && [ -d "sig_$sig/checkpoints/$at" ] || fail "SIG$sig: no checkpoint of the step in flight: $(tail -3 sig.log)"
    ./long steps=300 log_period=1000 run_name=sig_$sig metrics_file=sig_$sig.jsonl > /dev/null || fail "SIG$sig: resume"
done
./long steps=300 log_period=1000 metrics_file=sig_ref.jsonl > /dev/null || fail "uninterrupted run"
for sig in TERM INT; do
    cmp -s <(learning sig_ref.jsonl) <(learning sig_$sig.jsonl) || fail "SIG$sig: interrupted and resumed run differs"
done
echo "SIGTERM and SIGINT: step in flight saved, exit 143 / 130, resumed to the uninterrupted run's bits"

# abort_on_nan_loss: a diverging run stops at the first non-finite loss with
# exit 1 and keeps its last finite checkpoint; with false it goes on.
"$MTXC" build "$root/configs/base.yml" model_name=tiny override_model_config=true learning_rate=1e12 -o diverge > /dev/null || fail "build"
./diverge steps=30 log_period=100 run_name=nan checkpoint_period=1 max_num_checkpoints_to_keep=2 > nan.log 2>&1
rc=$?
[ $rc -eq 1 ] || fail "abort_on_nan_loss: exit $rc, want 1"
bad=$(sed -n 's/^trainer: error: step \([0-9]*\): loss .*nan.*stopping without saving this state (abort_on_nan_loss); earlier checkpoints are kept$/\1/p' nan.log)
[ -n "$bad" ] || fail "abort_on_nan_loss message: $(cat nan.log)"
[ "$(ls nan/checkpoints | sort -n | tail -1)" = $((bad - 1)) ] || fail "abort_on_nan_loss: checkpoints $(ls nan/checkpoints), nan at $bad"
./diverge steps=30 log_period=100 abort_on_nan_loss=false > /dev/null 2>&1 || fail "abort_on_nan_loss=false stopped the run"
echo "abort_on_nan_loss: stopped at step $bad, checkpoint $((bad - 1)) kept"
