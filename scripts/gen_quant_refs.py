#!/usr/bin/env python3
"""Generate the reference data of perch-quant's tests (crates/perch-quant/tests/data/).

Two independent references:

* gguf-py (PyPI ``gguf==0.19.0``, numpy): dequantization of every type it implements, and
  the reference quantizers it has (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, TQ1_0, TQ2_0, MXFP4).
* llama.cpp's own ggml-quants.c, through the small wrapper ``scripts/ggml_quant_ref.c``
  (built outside the repo, see its header): dequantization of the types gguf-py lacks
  (Q8_K, Q1_0, Q2_0), a cross-check of every other dequantization, the reference quantizers
  gguf-py lacks (Q8_1, Q8_K), and the K-quant / IQ4 quantizers (with and without an
  importance vector) whose squared error perch's quantizers must not exceed.

Reproduce (from the workspace root; needs numpy and the fixtures of `cargo xtask fixtures`):

    G=<llama.cpp source>/ggml     # e.g. the llama-cpp-python-0.3.36 sdist's vendor/llama.cpp
    cc -O2 -std=gnu11 -I$G/include -I$G/src -I$G/src/ggml-cpu scripts/ggml_quant_ref.c \
       $G/src/ggml-quants.c -o /tmp/ggml_quant_ref -lm
    PYTHONPATH=models/cache/gguf-0.19.0 python3 scripts/gen_quant_refs.py --ggml /tmp/ggml_quant_ref

Everything is seeded; running it twice writes identical files.

Files written (all little-endian):

  dequant/<type>.blocks   input blocks (random, plus edge-case blocks, plus blocks whose
                          grid indices enumerate the whole grid of the I-quants)
  dequant/<type>.f32      expected output of the first ``full_blocks`` blocks
  dequant/manifest.json   per type: block count, full_blocks, the reference used, and a
                          64-bit FNV-1a hash of the expected f32 output bytes of each block
                          (of each 256 values for F16/BF16)
  quant/rows.f32          f32 input rows (n_rows x 512): random rows of several spreads, heavy
                          tails, all-zero and half-zero rows, maximal and tiny magnitudes
  quant/imatrix.f32       f32 importance vector (512 values)
  quant/<type>.ref        expected quantized bytes (bit-exact references)
  quant/<type>.ggml       ggml's quantized bytes without / ``.ggml_im`` with the importance
                          vector (accuracy references for the K- and IQ4 quantizers, and
                          ``.ggml_im`` for Q4_0, Q4_1, Q5_0, Q5_1)
  quant/manifest.json     per type: shape, which files exist and where they came from
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "crates" / "perch-quant" / "tests" / "data"

try:
    from gguf import quants as gq
    from gguf.constants import GGMLQuantizationType as T
except ImportError:
    sys.exit("gguf-py not found: run with PYTHONPATH=models/cache/gguf-0.19.0 (cargo xtask fixtures)")

# name -> (ggml type id, block size, type size)
TYPES = {
    "f16": (1, 1, 2), "bf16": (30, 1, 2),
    "q4_0": (2, 32, 18), "q4_1": (3, 32, 20), "q5_0": (6, 32, 22), "q5_1": (7, 32, 24),
    "q8_0": (8, 32, 34), "q8_1": (9, 32, 36),
    "q2_K": (10, 256, 84), "q3_K": (11, 256, 110), "q4_K": (12, 256, 144),
    "q5_K": (13, 256, 176), "q6_K": (14, 256, 210), "q8_K": (15, 256, 292),
    "iq2_xxs": (16, 256, 66), "iq2_xs": (17, 256, 74), "iq3_xxs": (18, 256, 98),
    "iq1_s": (19, 256, 50), "iq4_nl": (20, 32, 18), "iq3_s": (21, 256, 110),
    "iq2_s": (22, 256, 82), "iq4_xs": (23, 256, 136), "iq1_m": (29, 256, 56),
    "tq1_0": (34, 256, 54), "tq2_0": (35, 256, 66), "mxfp4": (39, 32, 17),
    "nvfp4": (40, 64, 36), "q1_0": (41, 128, 18), "q2_0": (42, 64, 18),
}

# Byte offsets of the f16 scale fields (ggml-common.h).
F16_FIELDS = {
    "q4_0": [0], "q4_1": [0, 2], "q5_0": [0], "q5_1": [0, 2], "q8_0": [0], "q8_1": [0, 2],
    "q2_K": [80, 82], "q3_K": [108], "q4_K": [0, 2], "q5_K": [0, 2], "q6_K": [208],
    "iq2_xxs": [0], "iq2_xs": [0], "iq3_xxs": [0], "iq1_s": [0], "iq4_nl": [0],
    "iq3_s": [0], "iq2_s": [0], "iq4_xs": [0], "tq1_0": [52], "tq2_0": [64],
    "q1_0": [0], "q2_0": [0],
}

GGUF_PY_DEQUANT = {
    "f16": T.F16, "bf16": T.BF16, "q4_0": T.Q4_0, "q4_1": T.Q4_1, "q5_0": T.Q5_0,
    "q5_1": T.Q5_1, "q8_0": T.Q8_0, "q2_K": T.Q2_K, "q3_K": T.Q3_K, "q4_K": T.Q4_K,
    "q5_K": T.Q5_K, "q6_K": T.Q6_K, "iq2_xxs": T.IQ2_XXS, "iq2_xs": T.IQ2_XS,
    "iq3_xxs": T.IQ3_XXS, "iq1_s": T.IQ1_S, "iq4_nl": T.IQ4_NL, "iq3_s": T.IQ3_S,
    "iq2_s": T.IQ2_S, "iq4_xs": T.IQ4_XS, "iq1_m": T.IQ1_M, "tq1_0": T.TQ1_0,
    "tq2_0": T.TQ2_0, "mxfp4": T.MXFP4, "nvfp4": T.NVFP4,
}


def fnv1a64(data: bytes) -> str:
    h = 0xCBF29CE484222325
    for b in data:
        h ^= b
        h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


def f16_bits(x: float) -> int:
    return int(np.array([x], dtype=np.float16).view(np.uint16)[0])


def set_u16(blk: np.ndarray, off: int, v: int) -> None:
    blk[off] = v & 0xFF
    blk[off + 1] = (v >> 8) & 0xFF


def get_u16(blk: np.ndarray, off: int) -> int:
    return int(blk[off]) | (int(blk[off + 1]) << 8)


def random_scale(rng: np.random.Generator) -> float:
    return float(rng.choice([-1.0, 1.0]) * 10 ** rng.uniform(-3, 0.5))


def set_scales(name: str, blk: np.ndarray, values: list[int]) -> None:
    """Writes f16 bit patterns into the type's scale fields (cycling through `values`)."""
    if name == "q8_K":
        f = np.array([np.uint16(values[0])], dtype=np.uint16).view(np.float16).astype(np.float32)
        blk[0:4] = np.frombuffer(f.tobytes(), dtype=np.uint8)
        return
    if name == "iq1_m":
        # The f16 scale is the top nibbles of the four u16 words of `scales` (bytes 48..56).
        v = values[0]
        for w in range(4):
            off = 48 + 2 * w
            word = (get_u16(blk, off) & 0x0FFF) | (((v >> (4 * w)) & 0xF) << 12)
            set_u16(blk, off, word)
        return
    for i, off in enumerate(F16_FIELDS.get(name, [])):
        set_u16(blk, off, values[i % len(values)])


# --- grid index slots of the I-quants: (number of slots per block, setter) -------------------

def _iq2_xxs(blk, s, v):  # bytes 2 + 8*ib32 + l, l < 4
    blk[2 + 8 * (s // 4) + s % 4] = v


def _iq2_xs(blk, s, v):  # u16 qs[s]: low 9 bits
    off = 2 + 2 * s
    set_u16(blk, off, (get_u16(blk, off) & ~511 & 0xFFFF) | v)


def _iq2_s(blk, s, v):  # qs[s] | ((qh[s/4] >> 2*(s%4)) & 3) << 8
    blk[2 + s] = v & 0xFF
    qh = 66 + s // 4
    sh = 2 * (s % 4)
    blk[qh] = (int(blk[qh]) & ~(3 << sh) & 0xFF) | ((v >> 8) << sh)


def _iq3_xxs(blk, s, v):  # qs[s], s < 64
    blk[2 + s] = v


def _iq3_s(blk, s, v):  # qs[s] | ((qh[s/8] >> s%8) & 1) << 8
    blk[2 + s] = v & 0xFF
    qh = 66 + s // 8
    blk[qh] = (int(blk[qh]) & ~(1 << (s % 8)) & 0xFF) | ((v >> 8) << (s % 8))


def _iq1_s(blk, s, v):  # qs[s] | ((qh[s/4] >> 3*(s%4)) & 7) << 8
    blk[2 + s] = v & 0xFF
    off = 34 + 2 * (s // 4)
    sh = 3 * (s % 4)
    set_u16(blk, off, (get_u16(blk, off) & ~(7 << sh) & 0xFFFF) | ((v >> 8) << sh))


def _iq1_m(blk, s, v):  # qs[s] | ((qh[s/2] >> 4*(s%2)) & 7) << 8
    blk[s] = v & 0xFF
    qh = 32 + s // 2
    sh = 4 * (s % 2)
    blk[qh] = (int(blk[qh]) & ~(7 << sh) & 0xFF) | ((v >> 8) << sh)


GRIDS = {
    "iq2_xxs": (256, 32, _iq2_xxs), "iq2_xs": (512, 32, _iq2_xs), "iq2_s": (1024, 32, _iq2_s),
    "iq3_xxs": (256, 64, _iq3_xxs), "iq3_s": (512, 64, _iq3_s), "iq1_s": (2048, 32, _iq1_s),
    "iq1_m": (2048, 32, _iq1_m),
}


def make_blocks(name: str, rng: np.random.Generator) -> np.ndarray:
    _, bs, ts = TYPES[name]
    if bs == 1:  # f16 / bf16: 1024 random values (no NaN), plus the special values
        n = 1024
        bits = rng.integers(0, 1 << 16, size=n, dtype=np.uint32).astype(np.uint16)
        if name == "f16":
            nan = (bits & 0x7C00) == 0x7C00
            nan &= (bits & 0x03FF) != 0
            bits[nan] &= 0xFC00  # NaN -> inf
            special = [0x0000, 0x8000, 0x0001, 0x8001, 0x03FF, 0x0400, 0x7BFF, 0xFBFF, 0x7C00, 0xFC00, 0x3C00]
        else:
            nan = (bits & 0x7F80) == 0x7F80
            nan &= (bits & 0x007F) != 0
            bits[nan] &= 0xFF80
            special = [0x0000, 0x8000, 0x0001, 0x8001, 0x007F, 0x0080, 0x7F7F, 0xFF7F, 0x7F80, 0xFF80, 0x3F80]
        bits[: len(special)] = special
        return bits.view(np.uint8).reshape(-1, 2)

    n_random = max(4, 2048 // ts)
    blocks = rng.integers(0, 256, size=(n_random, ts), dtype=np.uint8)
    for blk in blocks:
        set_scales(name, blk, [f16_bits(random_scale(rng)) for _ in range(2)])
    edge = []
    # all-zero block
    edge.append(np.zeros(ts, dtype=np.uint8))
    # maximal scale magnitudes (65504, and negative), random quants
    for v in (0x7BFF, 0xFBFF):
        blk = rng.integers(0, 256, size=ts, dtype=np.uint8)
        set_scales(name, blk, [v])
        edge.append(blk)
    # tiny scales (smallest subnormal half, smallest normal)
    for v in (0x0001, 0x0400):
        blk = rng.integers(0, 256, size=ts, dtype=np.uint8)
        set_scales(name, blk, [v])
        edge.append(blk)
    # every quant byte at its maximum
    blk = np.full(ts, 0xFF, dtype=np.uint8)
    set_scales(name, blk, [f16_bits(1.0), f16_bits(0.5)])
    edge.append(blk)
    if name == "mxfp4":  # every E8M0 exponent 0..255 appears across the random blocks
        blocks[:, 0] = np.arange(len(blocks)) % 256
        for blk in edge:
            blk[0] = rng.integers(0, 256)
        edge[0][0] = 0
    out = [blocks, np.stack(edge)]
    if name in GRIDS:
        n_grid, slots, setter = GRIDS[name]
        n_cov = n_grid // slots
        cov = rng.integers(0, 256, size=(n_cov, ts), dtype=np.uint8)
        for b in range(n_cov):
            set_scales(name, cov[b], [f16_bits(random_scale(rng))])
            for s in range(slots):
                setter(cov[b], s, b * slots + s)
        out.append(cov)
    return np.concatenate(out, axis=0)


def run_ggml(tool: str, args: list[str]) -> None:
    subprocess.run([tool, *args], check=True)


def ggml_dequant(tool: str, type_id: int, blocks: np.ndarray, n: int) -> np.ndarray:
    with tempfile.TemporaryDirectory() as d:
        i, o = os.path.join(d, "in"), os.path.join(d, "out")
        blocks.tofile(i)
        run_ggml(tool, ["dequant", str(type_id), str(n), i, o])
        return np.fromfile(o, dtype="<f4")


def ggml_quantize(tool: str, type_id: int, rows: np.ndarray, imatrix: np.ndarray | None) -> bytes:
    with tempfile.TemporaryDirectory() as d:
        i, w, o = os.path.join(d, "in"), os.path.join(d, "w"), os.path.join(d, "out")
        rows.astype("<f4").tofile(i)
        if imatrix is not None:
            imatrix.astype("<f4").tofile(w)
        run_ggml(tool, ["quantize", str(type_id), str(rows.shape[0]), str(rows.shape[1]), i,
                        w if imatrix is not None else "-", o])
        return Path(o).read_bytes()


def gen_dequant(tool: str | None) -> None:
    out = OUT / "dequant"
    out.mkdir(parents=True, exist_ok=True)
    manifest = {}
    for k, name in enumerate(TYPES):
        if name == "q8_1":
            continue  # ggml has no Q8_1 dequantizer (perch's is tested against Q8_0's)
        type_id, bs, ts = TYPES[name]
        rng = np.random.default_rng(1000 + k)
        blocks = make_blocks(name, rng)
        n = blocks.shape[0] * bs
        ref = None
        source = None
        if name in GGUF_PY_DEQUANT:
            ref = gq.dequantize(blocks.reshape(-1), GGUF_PY_DEQUANT[name]).astype("<f4").reshape(-1)
            source = "gguf-py 0.19.0"
        if tool is not None and bs > 1:
            c = ggml_dequant(tool, type_id, blocks, n)
            if ref is None:
                ref, source = c, "llama.cpp ggml-quants.c"
            else:
                same = ref.view(np.uint32) == c.view(np.uint32)
                if not same.all():
                    bad = np.flatnonzero(~same)
                    print(f"{name}: gguf-py and ggml differ at {len(bad)} values, first at {bad[0]}: "
                          f"{ref[bad[0]]!r} vs {c[bad[0]]!r}", file=sys.stderr)
                else:
                    source += " (== llama.cpp ggml-quants.c)"
        if ref is None:
            print(f"{name}: no reference (pass --ggml), skipped", file=sys.stderr)
            continue
        per_block = ref.reshape(blocks.shape[0], bs)
        full_blocks = max(1, min(blocks.shape[0], 512 // bs))
        hash_unit = bs if bs > 1 else 256
        blocks.tofile(out / f"{name}.blocks")
        per_block[:full_blocks].astype("<f4").tofile(out / f"{name}.f32")
        manifest[name] = {
            "type_id": type_id,
            "n_blocks": int(blocks.shape[0]),
            "full_blocks": int(full_blocks),
            "reference": source,
            "hash_unit": hash_unit,
            "fnv1a64": [fnv1a64(ref[i:i + hash_unit].astype("<f4").tobytes()) for i in range(0, n, hash_unit)],
        }
        print(f"dequant {name}: {blocks.shape[0]} blocks, {source}")
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")


# --- quantizers ------------------------------------------------------------------------------

# Bit-exact references: gguf-py's numpy quantizers where it has them, ggml's otherwise.
GGUF_PY_QUANT = {"q4_0": T.Q4_0, "q4_1": T.Q4_1, "q5_0": T.Q5_0, "q5_1": T.Q5_1, "q8_0": T.Q8_0,
                 "tq1_0": T.TQ1_0, "tq2_0": T.TQ2_0, "mxfp4": T.MXFP4}
GGML_ONLY_QUANT = ["q8_1", "q8_K", "q1_0", "q2_0"]
# Legacy types whose ggml quantizer takes an importance vector (a different algorithm):
# accuracy references with the vector, bit-exact references without.
WEIGHTED_LEGACY = ["q4_0", "q4_1", "q5_0", "q5_1"]
# Accuracy references: ggml's quantize_<type>, without and with the importance vector.
ACCURACY_QUANT = ["q2_K", "q3_K", "q4_K", "q5_K", "q6_K", "iq4_nl", "iq4_xs"]

N_PER_ROW = 512


def make_rows(rng: np.random.Generator) -> np.ndarray:
    """Rows of 512 values: random ones of various spreads, then the edge cases."""
    rows = []
    for sigma in (1.0, 0.02, 30.0):
        rows.append(rng.normal(0, sigma, N_PER_ROW))
    # heavy tails: a few outliers per block
    r = rng.normal(0, 1, N_PER_ROW)
    r[rng.integers(0, N_PER_ROW, 12)] *= 25
    rows.append(r)
    # skewed, non-negative (asymmetric types' mins matter)
    rows.append(rng.exponential(0.5, N_PER_ROW) + 0.1)
    # all zero, half zero (zero blocks inside a row)
    rows.append(np.zeros(N_PER_ROW))
    r = rng.normal(0, 1, N_PER_ROW)
    r[: N_PER_ROW // 2] = 0
    rows.append(r)
    # maximal magnitudes: scales near and past the f16 range
    rows.append(rng.normal(0, 2e4, N_PER_ROW).clip(-6e4, 6e4))
    # tiny scales: values whose scales are f16 subnormals or underflow
    rows.append(rng.normal(0, 1e-6, N_PER_ROW))
    rows.append(rng.normal(0, 1e-9, N_PER_ROW))
    # constant blocks, and values on exact level boundaries
    rows.append(np.full(N_PER_ROW, 0.75))
    rows.append(np.round(rng.normal(0, 4, N_PER_ROW)) * 0.5)
    return np.stack(rows).astype(np.float32)


def gen_quant(tool: str | None) -> None:
    out = OUT / "quant"
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(2024)
    rows = make_rows(rng)
    imatrix = np.exp(rng.normal(0, 1, N_PER_ROW)).astype(np.float32)
    rows.astype("<f4").tofile(out / "rows.f32")
    imatrix.astype("<f4").tofile(out / "imatrix.f32")
    manifest = {"n_rows": int(rows.shape[0]), "n_per_row": N_PER_ROW, "types": {}}
    for name in [*GGUF_PY_QUANT, *GGML_ONLY_QUANT, *ACCURACY_QUANT]:
        type_id = TYPES[name][0]
        entry = {}
        if name in GGUF_PY_QUANT:
            with np.errstate(all="ignore"):
                ref = gq.quantize(rows, GGUF_PY_QUANT[name]).tobytes()
            entry["reference"] = "gguf-py 0.19.0"
            if tool is not None:
                c = ggml_quantize(tool, type_id, rows, None)
                if c != ref:
                    nb = TYPES[name][2]
                    bad = [i for i in range(0, len(c), nb) if c[i:i + nb] != ref[i:i + nb]]
                    print(f"{name}: gguf-py and ggml quantize {len(bad)} blocks differently "
                          f"(first at byte {bad[0]})", file=sys.stderr)
                else:
                    entry["reference"] += " (== llama.cpp ggml-quants.c)"
            (out / f"{name}.ref").write_bytes(ref)
            entry["files"] = ["ref"]
            if name in WEIGHTED_LEGACY and tool is not None:
                (out / f"{name}.ggml_im").write_bytes(ggml_quantize(tool, type_id, rows, imatrix))
                entry["files"].append("ggml_im")
        elif tool is None:
            print(f"{name}: needs --ggml, skipped", file=sys.stderr)
            continue
        elif name in GGML_ONLY_QUANT:
            (out / f"{name}.ref").write_bytes(ggml_quantize(tool, type_id, rows, None))
            entry["reference"] = "llama.cpp ggml-quants.c"
            entry["files"] = ["ref"]
        else:
            (out / f"{name}.ggml").write_bytes(ggml_quantize(tool, type_id, rows, None))
            (out / f"{name}.ggml_im").write_bytes(ggml_quantize(tool, type_id, rows, imatrix))
            entry["reference"] = "llama.cpp ggml-quants.c quantize_" + name
            entry["files"] = ["ggml", "ggml_im"]
        manifest["types"][name] = entry
        print(f"quant {name}: {entry['reference']}")
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ggml", help="path of the built ggml_quant_ref tool (see scripts/ggml_quant_ref.c)")
    args = ap.parse_args()
    gen_dequant(args.ggml)
    gen_quant(args.ggml)


if __name__ == "__main__":
    main()
