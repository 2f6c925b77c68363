#!/bin/sh
# The command line: help, version, exit statuses and the values the
# foundation issue names. Usage: tests/test_cli.sh MTXC (from the source root)
MTXC=$1
fails=0
check() {   # check NAME EXPECTED_STATUS EXPECTED_TEXT COMMAND...
    name=$1; want_rc=$2; want=$3; shift 3
    out=$("$@" 2>&1); rc=$?
    if [ $rc -ne "$want_rc" ]; then echo "FAIL $name: exit $rc, want $want_rc"; fails=$((fails + 1)); return; fi
    case "$out" in *"$want"*) ;; *) printf 'FAIL %s: output lacks "%s":\n%s\n' "$name" "$want" "$out"; fails=$((fails + 1)) ;; esac
}
check help 0 "usage: mtxc COMMAND CONFIG" "$MTXC" --help
check no_args 2 "usage: mtxc COMMAND" "$MTXC"
check version 0 "mtxc 0." "$MTXC" --version
check config_help 0 "usage: mtxc config CONFIG" "$MTXC" config --help
check unknown_cmd 2 "unknown command 'confg' (did you mean 'config'?)" "$MTXC" confg
check missing_config 2 "missing CONFIG" "$MTXC" config
check bad_option 2 "unknown option '--frobnicate'" "$MTXC" config configs/base.yml --frobnicate
check two_configs 2 "unexpected argument 'b.yml'" "$MTXC" config configs/base.yml b.yml
for kv in "emb_dim: 4096" "num_query_heads: 32" "num_kv_heads: 32" "mlp_dim: 11008" \
          "num_decoder_layers: 32" "vocab_size: 32000"; do
    check "llama2-7b $kv" 0 "$kv" "$MTXC" config configs/base.yml model_name=llama2-7b
done
for kv in "num_kv_heads: 8" "mlp_dim: 14336" "vocab_size: 128256" "rope_max_timescale: 500000.0"; do
    check "llama3-8b $kv" 0 "$kv" "$MTXC" config configs/base.yml model_name=llama3-8b
done
check derived_marked 0 "emb_dim: 768  # derived" "$MTXC" config configs/base.yml model_name=gpt2-124m
# Every preset resolves.
for f in configs/models/*.yml; do
    m=$(basename "$f" .yml)
    check "preset $m" 0 "model_name: \"$m\"" "$MTXC" config configs/base.yml model_name="$m"
done
echo "cli: $fails failures"
[ $fails -eq 0 ]
