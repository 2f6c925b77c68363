#!/bin/sh
# Builds tools/bench/gemm_rate.c against the built runtime into DIR/gemm_rate
# (the benchmarks' baseline: BLIS's sgemm and oneDNN's bf16 matmul rates).
# Usage: tools/bench/gemm_rate.sh DIR   (from the source root after building)
set -e
cc -O2 -Iruntime tools/bench/gemm_rate.c build/runtime/libmtxrt.a "$(ls /usr/lib/x86_64-linux-gnu/libblis.so)" -ldnnl \
   $(pkg-config --libs libcjson libxxhash yaml-0.1 ompi-c sentencepiece libpcre2-8 libutf8proc) -lstdc++ -fopenmp -lm -lpthread -o "$1/gemm_rate"
