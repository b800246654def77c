#!/usr/bin/env python3
"""Writes the seed corpus of the GGUF reader's fuzz target (fuzz/seeds/gguf_reader/).

Run from the workspace root after scripts/gen_gguf_refs.py:

    PYTHONPATH=models/cache/gguf-0.19.0 python3 scripts/gen_fuzz_seeds.py

Seeds are tiny (under 2 KiB each) and cover: gguf-py's reference files (every value type,
nested arrays, alignment 64), a vocab-only file with no tensors, quantized tensor types with
256-element blocks, a version 2 header and a header-only file.
"""

import os
import shutil

import numpy as np

import gguf

ROOT = os.path.join(os.path.dirname(__file__), "..")
OUT = os.path.join(ROOT, "fuzz", "seeds", "gguf_reader")
DATA = os.path.join(ROOT, "crates", "perch-gguf", "tests", "data")


def main():
    os.makedirs(OUT, exist_ok=True)
    for name in ("all_types.gguf", "nested.gguf"):
        shutil.copy(os.path.join(DATA, name), os.path.join(OUT, name))

    # Vocab only: no tensors (llama.cpp's ggml-vocab files look like this).
    w = gguf.GGUFWriter(os.path.join(OUT, "vocab_only.gguf"), arch="llama")
    w.add_tokenizer_model("gpt2")
    w.add_token_list(["<s>", "</s>", "a", "b", "ab", "\u0120the"])
    w.add_token_types([3, 3, 1, 1, 1, 1])
    w.add_token_merges(["a b", "\u0120 the"])
    w.add_chat_template("{{ messages[0]['content'] }}")
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()

    # K-quant and other block types, raw bytes.
    w = gguf.GGUFWriter(os.path.join(OUT, "quant_types.gguf"), arch="llama")
    w.add_block_count(1)
    w.add_context_length(64)
    rng = np.random.default_rng(1)
    for ty, nbytes in ((gguf.GGMLQuantizationType.Q4_K, 144), (gguf.GGMLQuantizationType.Q6_K, 210),
                       (gguf.GGMLQuantizationType.Q4_0, 18), (gguf.GGMLQuantizationType.BF16, 64)):
        raw = rng.integers(0, 255, (1, nbytes)).astype(np.uint8)
        w.add_tensor(f"t.{ty.name.lower()}", raw, raw_dtype=ty)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()

    # Version 2 of the reference file (same layout).
    with open(os.path.join(DATA, "nested.gguf"), "rb") as f:
        b = bytearray(f.read())
    b[4:8] = (2).to_bytes(4, "little")
    with open(os.path.join(OUT, "nested_v2.gguf"), "wb") as f:
        f.write(b)

    # Header only: no tensors, no metadata.
    with open(os.path.join(OUT, "header_only.gguf"), "wb") as f:
        f.write(b"GGUF" + (3).to_bytes(4, "little") + bytes(16))

    for name in sorted(os.listdir(OUT)):
        print(name, os.path.getsize(os.path.join(OUT, name)), "bytes")


if __name__ == "__main__":
    main()
