#!/usr/bin/env python3
"""Record llama-imatrix's importance matrix, and llama-quantize's tensor types with it, as
reference data for `perch imatrix` and `perch quantize --imatrix`.

Runs the peer's llama-imatrix on SmolLM2 dequantized to F32 over the GPL-3 text (context 128,
4 chunks, 2 threads, `-nr` because ggml's AMX repacking crashes on the reference machine) and
stores, per weight tensor, the row count, the total of its sums of squares and the sums at 16
evenly spread columns (numpy.linspace(0, n - 1, 16) rounded) (the whole matrix would be 600 KB). Then runs llama-quantize with that
imatrix for the file types whose mix changes with an imatrix and stores every tensor's type.
crates/perch-cli/tests/imatrix.rs runs perch on the same inputs and compares.

    perch quantize --allow-requantize SmolLM2-135M-Instruct.Q4_1.gguf /tmp/smol-f32.gguf F32
    PYTHONPATH=models/cache/gguf-0.19.0 python3 scripts/record_peer_imatrix.py \\
        --bin ~/.cache/perch-peer/llama_cpp_python-0.3.36/vendor/llama.cpp/build/bin \\
        --out crates/perch-cli/tests/data/peer_imatrix.json /tmp/smol-f32.gguf
"""
import argparse
import json
import pathlib
import subprocess
import sys
import tempfile

import numpy as np
import gguf

TEXT = "/usr/share/common-licenses/GPL-3"
CTX = 128
CHUNKS = 4
SAMPLES = 16
FTYPES = ["Q4_0", "IQ4_XS"]


def run(cmd):
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"{cmd[0]} failed ({p.returncode}):\n{p.stdout}{p.stderr}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True, help="the peer's build/bin folder")
    ap.add_argument("--out", required=True)
    ap.add_argument("model", help="SmolLM2 as F32")
    a = ap.parse_args()
    b = pathlib.Path(a.bin)
    tmp = pathlib.Path(tempfile.mkdtemp())
    im = tmp / "imatrix.gguf"
    run([str(b / "llama-imatrix"), "-m", a.model, "-f", TEXT, "-c", str(CTX),
         "--chunks", str(CHUNKS), "-t", "2", "-nr", "-o", str(im)])
    r = gguf.GGUFReader(str(im))
    t = {x.name: np.array(x.data, dtype=np.float64).ravel() for x in r.tensors}
    entries = {}
    for name in sorted(t):
        if not name.endswith(".in_sum2"):
            continue
        w = name[: -len(".in_sum2")]
        sums = t[name]
        idx = np.linspace(0, len(sums) - 1, SAMPLES).round().astype(int)
        entries[w] = {
            "count": int(t[w + ".counts"][0]),
            "n": len(sums),
            "total": float(f"{sums.sum():.9g}"),
            "values": [float(f"{sums[i]:.7g}") for i in idx],
        }
    types = {}
    for ft in FTYPES:
        out = tmp / f"{ft}.gguf"
        run([str(b / "llama-quantize"), "--imatrix", str(im), a.model, str(out), ft, "2"])
        q = gguf.GGUFReader(str(out))
        types[ft] = {x.name: x.tensor_type.name for x in q.tensors}
        out.unlink()
    rec = {
        "command": f"llama-imatrix -m smol-f32.gguf -f {TEXT} -c {CTX} --chunks {CHUNKS} -t 2 -nr",
        "text": TEXT,
        "ctx": CTX,
        "chunks": CHUNKS,
        "entries": entries,
        "quantize_types_with_imatrix": types,
    }
    text = json.dumps(rec, separators=(",", ":"))
    # One tensor per line keeps diffs readable.
    text = text.replace('},"', '},\n"')
    pathlib.Path(a.out).write_text(text + "\n")
    print(f"{len(entries)} entries, types for {', '.join(types)}")


if __name__ == "__main__":
    main()
