#!/bin/sh
# The compile-only regression suite: every case of tests/compile_only/cases.txt
# is compiled by `mtxc compile-only --format json` and must print exactly its
# golden report. Usage: tests/run_compile_only.sh MTXC [--update]  (from the source root)
MTXC=$1
UPDATE=${2:-}
fails=0; n=0
out=$(mktemp)
trap 'rm -f "$out"' EXIT
while read -r name args; do
    case "$name" in ''|'#'*) continue ;; esac
    n=$((n + 1))
    golden=tests/compile_only/$name.golden
    # shellcheck disable=SC2086
    "$MTXC" compile-only configs/base.yml $args --format json > "$out" 2>&1
    rc=$?
    echo "exit $rc" >> "$out"
    # A report or a refusal can be golden; mtxc's own failure never is.
    if grep -q "a bug in mtxc" "$out"; then
        echo "FAIL $name: mtxc failed:"; head -5 "$out"; fails=$((fails + 1)); continue
    fi
    if [ "$UPDATE" = --update ]; then cp "$out" "$golden"; continue; fi
    if ! cmp -s "$out" "$golden"; then
        echo "FAIL $name:"; diff "$golden" "$out" | head -5; fails=$((fails + 1))
    fi
done < tests/compile_only/cases.txt
# The foundation of the report: llama2-7b on 8-way FSDP holds params + grads +
# Adam state of 7B x 16 bytes / 8 per device, within 5%.
"$MTXC" compile-only configs/base.yml model_name=llama2-7b compile_topology=cpu-8 ici_fsdp_parallelism=8 \
    per_device_batch_size=1 max_target_length=2048 --format json > "$out"
tr -d '{}",' < "$out" | tr ' ' '\n' | awk '
    prev == "params:" { p = $1 } prev == "gradients:" { g = $1 } prev == "optimizer_state:" { o = $1 }
    prev == "param_count:" { n = $1 } { prev = $1 }
    END { want = n * 16 / 8; got = p + g + o; printf "llama2-7b fsdp 8: params + grads + optimizer state %.3f GB per device, 7B x 16 / 8 = %.3f GB\n", got / 1e9, want / 1e9
          exit !(got > 0.95 * want && got < 1.05 * want) }' || fails=$((fails + 1))
# Expert parallelism: mixtral-8x7b on 8 devices with expert 8 holds 16 bytes x
# (non-expert params + expert params / 8) per device, within 5% (its experts'
# wi_0, wi_1, wo: 32 layers x 3 x 8 x 4096 x 14336 params).
"$MTXC" compile-only configs/base.yml model_name=mixtral-8x7b compile_topology=cpu-8 ici_fsdp_parallelism=1 \
    ici_expert_parallelism=8 per_device_batch_size=1 --format json > "$out"
tr -d '{}",' < "$out" | tr ' ' '\n' | awk '
    prev == "params:" { p = $1 } prev == "gradients:" { g = $1 } prev == "optimizer_state:" { o = $1 }
    prev == "param_count:" { n = $1 } { prev = $1 }
    END { e = 32 * 3 * 8 * 4096 * 14336; want = 16 * (n - e + e / 8); got = p + g + o
          printf "mixtral-8x7b expert 8: params + grads + optimizer state %.3f GB per device, 16 x (non-expert + expert / 8) = %.3f GB\n", got / 1e9, want / 1e9
          exit !(got > 0.95 * want && got < 1.05 * want) }' || fails=$((fails + 1))
echo "compile-only: $((n - fails)) of $n cases match their golden reports"
[ $fails -eq 0 ]
