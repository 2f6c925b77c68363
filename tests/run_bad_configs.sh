#!/bin/sh
# Every file in tests/bad_configs must be refused by `mtxc config` with exit
# status 2, exactly the message on its "# expect:" line, and nothing on stdout.
# Usage: tests/run_bad_configs.sh MTXC [--update]   (run from the source root)
MTXC=$1
UPDATE=${2:-}
fail=0
n=0
out=$(mktemp); err=$(mktemp)
trap 'rm -f "$out" "$err"' EXIT
for f in tests/bad_configs/*.yml; do
    n=$((n + 1))
    # Updating: the expect line goes first, so write a placeholder before running
    # mtxc, or the line numbers in its message would be off by one.
    if [ "$UPDATE" = --update ] && ! grep -aq '^# expect: ' "$f"; then
        { echo '# expect: (pending)'; cat "$f"; } > "$f.tmp" && mv "$f.tmp" "$f"
    fi
    args=$(sed -n 's/^# args: //p' "$f")
    expect=$(sed -n 's/^# expect: //p' "$f")
    # shellcheck disable=SC2086
    "$MTXC" config "$f" $args >"$out" 2>"$err"
    rc=$?
    got=$(cat "$err")
    if [ "$UPDATE" = --update ]; then
        grep -av '^# expect: ' "$f" > "$f.tmp"   # -a: some hold bytes that are not UTF-8
        { printf '# expect: %s\n' "$got"; cat "$f.tmp"; } > "$f"; rm -f "$f.tmp"
        continue
    fi
    if [ $rc -ne 2 ]; then echo "FAIL $f: exit status $rc, want 2"; fail=$((fail + 1)); continue; fi
    if [ -s "$out" ]; then echo "FAIL $f: wrote to stdout"; fail=$((fail + 1)); continue; fi
    if [ "$got" != "$expect" ]; then
        printf 'FAIL %s\n  want: %s\n  got:  %s\n' "$f" "$expect" "$got"; fail=$((fail + 1))
    fi
done
echo "bad configs: $((n - fail)) of $n refused with the expected message"
[ $fail -eq 0 ]
