#!/bin/sh
# Op attributes are read and written by name (IA / FA, from ops.def): no
# literal index into Op.ia or Op.fa, no positional array copied into them
# and no pointer aliasing them, anywhere in the compiler or its unit tests
# (copying one op's attributes to another's, memcpy(to->ia, from->ia, ...),
# keeps the names).
# Usage: tests/check_attribute_names.sh   (from the source root)
files="compiler/*.c compiler/*.h compiler/ops.def tests/unit/*.c"
# shellcheck disable=SC2086
bad=$(grep -nE '(ia|fa)\[[0-9]' $files | grep -vE 'int64_t ia\[8\];|double fa\[8\];')
# shellcheck disable=SC2086
copies=$(grep -nE 'memcpy\([^;]*(->|\.)(ia|fa)\b' $files | grep -vE '(->|\.)ia\b[^;]*(->|\.)ia\b|(->|\.)fa\b[^;]*(->|\.)fa\b')
# shellcheck disable=SC2086
aliases=$(grep -nE '=\s*[A-Za-z_]+(->|\.)(ia|fa)\s*;' $files)
if [ -n "$bad$copies$aliases" ]; then
    echo "literal attribute places (use IA(op, set, name) / FA(op, set, name)):"
    printf '%s\n' "$bad" "$copies" "$aliases" | grep .
    exit 1
fi
echo "attributes by name: no literal Op.ia / Op.fa index in $(echo $files | wc -w) files"
