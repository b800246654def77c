#!/bin/sh
# Builds scripts/bench_ggml_kernels.c against the peer llama.cpp build (its libggml-cpu) and
# runs it for the given ggml type names (default: perch's hot types).
#   scripts/bench_ggml_kernels.sh [q4_0 q8_0 ...]
# LLAMA_DIR defaults to the tree that shared/tools/peer-llama-cpp.sh builds.
set -eu
LLAMA_DIR=${LLAMA_DIR:-$HOME/.cache/perch-peer/llama_cpp_python-0.3.36/vendor/llama.cpp}
OUT=${TMPDIR:-/tmp}/perch-bench-ggml-kernels
cc -O2 -o "$OUT" "$(dirname "$0")/bench_ggml_kernels.c" \
    -I"$LLAMA_DIR/ggml/include" -L"$LLAMA_DIR/build/bin" -Wl,-rpath,"$LLAMA_DIR/build/bin" \
    -lggml-base -lggml-cpu -lpthread
if [ $# -eq 0 ]; then
    set -- q4_0 q4_1 q5_0 q8_0 q4_K q5_K q6_K iq4_xs
fi
exec "$OUT" "$@"
