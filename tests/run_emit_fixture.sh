#!/bin/sh
# The emitted-C fixture: `mtxc emit` of every case in tests/emit_fixture/
# cases.txt must give the files whose SHA-256 sums tests/emit_fixture/sums.txt
# holds. A change meant to alter the generated C updates the sums (--update);
# tools/emit-diff REV shows what changed against another revision.
# Usage: tests/run_emit_fixture.sh MTXC [--update]   (from the source root)
MTXC=$1
UPDATE=${2:-}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
n=0; fails=0
while read -r name args; do
    case "$name" in ''|'#'*) continue ;; esac
    n=$((n + 1))
    # shellcheck disable=SC2086
    if ! "$MTXC" emit configs/base.yml $args -o "$dir/$name" > "$dir/$name.log" 2>&1; then
        echo "FAIL $name: mtxc emit failed: $(tail -1 "$dir/$name.log")"; fails=$((fails + 1)); continue
    fi
    (cd "$dir" && sha256sum "$name/step.c" "$name/step.h" "$name/main.c") >> "$dir/sums.txt"
done < tests/emit_fixture/cases.txt
if [ "$UPDATE" = --update ]; then
    cp "$dir/sums.txt" tests/emit_fixture/sums.txt
    echo "emit fixture: $n cases written"
    exit 0
fi
if ! cmp -s "$dir/sums.txt" tests/emit_fixture/sums.txt; then
    diff tests/emit_fixture/sums.txt "$dir/sums.txt" | sed -n 's/^> [0-9a-f]*  /FAIL emitted C differs: /p'
    fails=$((fails + 1))
    echo "(tools/emit-diff HEAD shows how; tests/run_emit_fixture.sh MTXC --update accepts it)"
fi
echo "emit fixture: $n cases, $fails failures"
[ $fails -eq 0 ]
