#!/usr/bin/env python3
"""An independent BERT sentence-embedding reference in numpy (no torch): reads a Hugging Face
folder's config.json, model.safetensors and 1_Pooling/config.json, embeds token-id sequences
and prints the pooled, L2-normalized vectors as JSON.

It follows transformers' BertModel (absolute positions, token type 0, post-LayerNorm blocks,
exact erf GELU, attention over the whole sequence) and sentence-transformers' Pooling and
Normalize modules. perch's tests feed it the `tokenizers` crate's ids and compare perch's
native GGUF run with its vectors.

Usage: bert_reference.py MODEL_DIR < ids.json   (ids.json: [[101, ...], ...])
"""
import json
import math
import struct
import sys
from pathlib import Path

import numpy as np


def load_safetensors(path):
    raw = Path(path).read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    base = 8 + n
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        dtype = {"F32": np.float32, "F16": np.float16, "I64": np.int64}[info["dtype"]]
        out[name] = np.frombuffer(raw[base + start : base + end], dtype=dtype).reshape(info["shape"])
    return out


erf = np.vectorize(math.erf, otypes=[np.float64])


def layer_norm(x, w, b, eps):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * w + b


def embed(model_dir, ids):
    d = Path(model_dir)
    cfg = json.loads((d / "config.json").read_text())
    w = {k.removeprefix("bert."): v.astype(np.float64) for k, v in load_safetensors(d / "model.safetensors").items()}
    pooling = "mean"
    pcfg = d / "1_Pooling" / "config.json"
    if pcfg.exists() and json.loads(pcfg.read_text()).get("pooling_mode_cls_token"):
        pooling = "cls"
    eps = cfg.get("layer_norm_eps", 1e-12)
    n_head = cfg["num_attention_heads"]
    out = []
    for seq in ids:
        seq = np.array(seq)
        n = len(seq)
        x = (
            w["embeddings.word_embeddings.weight"][seq]
            + w["embeddings.position_embeddings.weight"][:n]
            + w["embeddings.token_type_embeddings.weight"][0]
        )
        x = layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], eps)
        for i in range(cfg["num_hidden_layers"]):
            p = f"encoder.layer.{i}."
            lin = lambda v, name: v @ w[p + name + ".weight"].T + w[p + name + ".bias"]
            q = lin(x, "attention.self.query")
            k = lin(x, "attention.self.key")
            v = lin(x, "attention.self.value")
            hd = q.shape[1] // n_head
            heads = []
            for h in range(n_head):
                s = slice(h * hd, (h + 1) * hd)
                scores = q[:, s] @ k[:, s].T / math.sqrt(hd)
                scores = np.exp(scores - scores.max(-1, keepdims=True))
                scores /= scores.sum(-1, keepdims=True)
                heads.append(scores @ v[:, s])
            a = lin(np.concatenate(heads, axis=1), "attention.output.dense")
            x = layer_norm(x + a, w[p + "attention.output.LayerNorm.weight"], w[p + "attention.output.LayerNorm.bias"], eps)
            u = lin(x, "intermediate.dense")
            u = 0.5 * u * (1.0 + erf(u / math.sqrt(2.0)))
            o = lin(u, "output.dense")
            x = layer_norm(x + o, w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"], eps)
        vec = x[0] if pooling == "cls" else x.mean(0)
        out.append((vec / np.linalg.norm(vec)).tolist())
    return out


if __name__ == "__main__":
    ids = json.load(sys.stdin)
    json.dump(embed(sys.argv[1], ids), sys.stdout)
