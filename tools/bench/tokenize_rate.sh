#!/bin/sh
# Builds tools/bench/tokenize_rate.c against the built runtime into DIR/tokenize_rate.
# Usage: tools/bench/tokenize_rate.sh DIR   (from the source root after building)
set -e
cc -O2 -Iruntime tools/bench/tokenize_rate.c build/runtime/libmtxrt.a "$(ls /usr/lib/x86_64-linux-gnu/libblis.so)" -ldnnl \
   $(pkg-config --libs libcjson libxxhash yaml-0.1 ompi-c sentencepiece libpcre2-8 libutf8proc) -lstdc++ -fopenmp -lm \
   -lpthread -o "$1/tokenize_rate"
