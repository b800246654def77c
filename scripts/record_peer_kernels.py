#!/usr/bin/env python3
"""Record dot-product test vectors from llama.cpp's own ggml CPU library.

For every weight type perch-quant has a dot product for, this quantizes a few random f32 rows
with ggml's quantizer (`ggml_quantize_chunk`), converts random activation rows with the CPU
backend's own `from_float` for the paired activation type (`type_traits_cpu[vec_dot_type]`),
and calls both ggml's portable kernel (`ggml_vec_dot_<t>_<a>_generic`) and the native one
the CPU backend picks (`type_traits_cpu[t].vec_dot`). The results are written as small text
files under crates/perch-quant/tests/kernels_data/, which tests/kernels_peer.rs reads.

Usage:
    python3 scripts/record_peer_kernels.py [LIBDIR]

LIBDIR holds libggml-base.so and libggml-cpu.so of the peer build (default: the build made by
shared/tools/peer-llama-cpp.sh under ~/.cache/perch-peer). Needs numpy.
"""

import ctypes
import os
import sys

import numpy as np

DEFAULT_LIBDIR = os.path.expanduser(
    "~/.cache/perch-peer/llama_cpp_python-0.3.36/vendor/llama.cpp/build/bin"
)
OUT = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "crates", "perch-quant", "tests", "kernels_data"
)

# ggml type ids (ggml.h enum ggml_type) and the generic kernel suffix of each weight type.
TYPES = {
    "f32": (0, None), "f16": (1, None), "q4_0": (2, "q4_0_q8_0"), "q4_1": (3, "q4_1_q8_1"),
    "q5_0": (6, "q5_0_q8_0"), "q5_1": (7, "q5_1_q8_1"), "q8_0": (8, "q8_0_q8_0"),
    "q2_K": (10, "q2_K_q8_K"), "q3_K": (11, "q3_K_q8_K"), "q4_K": (12, "q4_K_q8_K"),
    "q5_K": (13, "q5_K_q8_K"), "q6_K": (14, "q6_K_q8_K"),
    "iq2_xxs": (16, "iq2_xxs_q8_K"), "iq2_xs": (17, "iq2_xs_q8_K"), "iq3_xxs": (18, "iq3_xxs_q8_K"),
    "iq1_s": (19, "iq1_s_q8_K"), "iq4_nl": (20, "iq4_nl_q8_0"), "iq3_s": (21, "iq3_s_q8_K"),
    "iq2_s": (22, "iq2_s_q8_K"), "iq4_xs": (23, "iq4_xs_q8_K"), "iq1_m": (29, "iq1_m_q8_K"),
    "bf16": (30, None), "tq1_0": (34, "tq1_0_q8_K"), "tq2_0": (35, "tq2_0_q8_K"),
    "mxfp4": (39, "mxfp4_q8_0"),
}
N = 256  # elements per row: one super-block, eight 32-blocks


def xorshift_row(seed, n, cube):
    """The test's deterministic f32 row (tests/kernels_peer.rs computes the same bits):
    xorshift32 from `seed`, u = (s >> 8) / 2^24 in [0, 1), value (u - 0.5) * 8, or
    (u - 0.5)^3 * 64 when `cube` (heavy-tailed)."""
    s = seed & 0xFFFFFFFF
    out = np.zeros(n, dtype=np.float32)
    for i in range(n):
        s ^= (s << 13) & 0xFFFFFFFF
        s ^= s >> 17
        s ^= (s << 5) & 0xFFFFFFFF
        u = np.float32(s >> 8) / np.float32(16777216.0)
        c = u - np.float32(0.5)
        out[i] = (c * c * c * np.float32(64.0)) if cube else (c * np.float32(8.0))
    return out


class TraitsCpu(ctypes.Structure):
    _fields_ = [
        ("from_float", ctypes.c_void_p),
        ("vec_dot", ctypes.c_void_p),
        ("vec_dot_type", ctypes.c_int),
        ("nrows", ctypes.c_int64),
    ]


FROM_FLOAT = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64)
VEC_DOT = ctypes.CFUNCTYPE(
    None, ctypes.c_int, ctypes.POINTER(ctypes.c_float), ctypes.c_size_t, ctypes.c_void_p,
    ctypes.c_size_t, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int,
)


def main():
    libdir = sys.argv[1] if len(sys.argv) > 1 else DEFAULT_LIBDIR
    base = ctypes.CDLL(os.path.join(libdir, "libggml-base.so"), mode=ctypes.RTLD_GLOBAL)
    cpu = ctypes.CDLL(os.path.join(libdir, "libggml-cpu.so"), mode=ctypes.RTLD_GLOBAL)
    cpu.ggml_cpu_init()
    cpu.ggml_get_type_traits_cpu.restype = ctypes.POINTER(TraitsCpu)
    base.ggml_row_size.restype = ctypes.c_size_t
    base.ggml_row_size.argtypes = [ctypes.c_int, ctypes.c_int64]
    base.ggml_quantize_chunk.restype = ctypes.c_size_t
    base.ggml_quantize_chunk.argtypes = [
        ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64,
        ctypes.c_int64, ctypes.c_void_p,
    ]
    base.ggml_quantize_requires_imatrix.restype = ctypes.c_bool
    os.makedirs(OUT, exist_ok=True)

    for name, (tid, generic) in TYPES.items():
        tr = cpu.ggml_get_type_traits_cpu(tid).contents
        act = tr.vec_dot_type
        act_tr = cpu.ggml_get_type_traits_cpu(act).contents
        wsize = base.ggml_row_size(tid, N)
        xsize = base.ggml_row_size(act, N)
        native = VEC_DOT(tr.vec_dot)
        gen = VEC_DOT(("ggml_vec_dot_" + generic + "_generic", cpu)) if generic else None
        from_float = FROM_FLOAT(act_tr.from_float)
        cases = []
        # Case 0: uniform weights and activations. Case 1: heavy-tailed activations, the
        # first half of the weights zero.
        for case in range(2):
            w = xorshift_row(1000 * tid + 2 * case + 1, N, False)
            x = xorshift_row(1000 * tid + 2 * case + 2, N, case == 1)
            if case == 1:
                w[: N // 2] = 0.0
            imat = np.ones(N, dtype=np.float32)
            wq = np.zeros(wsize, dtype=np.uint8)
            need_im = base.ggml_quantize_requires_imatrix(tid)
            base.ggml_quantize_chunk(
                tid, w.ctypes.data, wq.ctypes.data, 0, 1, N,
                imat.ctypes.data if need_im else None,
            )
            xq = np.zeros(xsize, dtype=np.uint8)
            from_float(x.ctypes.data, xq.ctypes.data, N)
            out = ctypes.c_float(0.0)
            native(N, ctypes.byref(out), 0, wq.ctypes.data, 0, xq.ctypes.data, 0, 1)
            d_native = out.value
            d_gen = None
            if gen is not None:
                out = ctypes.c_float(0.0)
                gen(N, ctypes.byref(out), 0, wq.ctypes.data, 0, xq.ctypes.data, 0, 1)
                d_gen = out.value
            cases.append((wq, 1000 * tid + 2 * case + 2, case == 1, xq, d_gen, d_native))

        path = os.path.join(OUT, name + ".txt")
        with open(path, "w") as f:
            f.write(f"# ggml dot-product vectors for {name}, written by scripts/record_peer_kernels.py\n")
            f.write(f"type {name}\nn {N}\n")
            for wq, xseed, xcube, xq, d_gen, d_native in cases:
                f.write("\n")
                f.write("w " + wq.tobytes().hex() + "\n")
                f.write(f"x {xseed} {'cube' if xcube else 'linear'}\n")
                f.write("xq " + xq.tobytes().hex() + "\n")
                if d_gen is not None:
                    f.write("generic " + np.float32(d_gen).astype("<f4").tobytes().hex() + "\n")
                f.write("native " + np.float32(d_native).astype("<f4").tobytes().hex() + "\n")
        print(f"{name}: act type {act}, wrote {path}")


if __name__ == "__main__":
    main()
