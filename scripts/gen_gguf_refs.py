#!/usr/bin/env python3
"""Writes small reference GGUF files with gguf-py (an independent writer) for perch-gguf's tests.

Run from the workspace root after `cargo xtask fixtures`:

    pip install numpy
    PYTHONPATH=models/cache/gguf-0.19.0 python3 scripts/gen_gguf_refs.py

Outputs, in crates/perch-gguf/tests/data/:
  all_types.gguf / all_types.json  every metadata value type, scalar and array, incl. a string
                                   that is not UTF-8, and tensors of several ggml types
  nested.gguf / nested.json        nested arrays (arrays of arrays, mixed inner types), and a
                                   custom alignment of 64
The .json files record what the script gave gguf-py (key, type, value; tensors with name, ggml
type id, dims in ggml order, offset and data as hex), so the Rust tests check perch's reader
against the values gguf-py was asked to write, and its writer against gguf-py's bytes.
"""

import json
import os
import sys

import numpy as np

import gguf
from gguf import GGUFValueType as T

OUT = os.path.join(os.path.dirname(__file__), "..", "crates", "perch-gguf", "tests", "data")
NAMES = {T.UINT8: "u8", T.INT8: "i8", T.UINT16: "u16", T.INT16: "i16", T.UINT32: "u32",
         T.INT32: "i32", T.FLOAT32: "f32", T.BOOL: "bool", T.STRING: "string",
         T.ARRAY: "array", T.UINT64: "u64", T.INT64: "i64", T.FLOAT64: "f64"}


def enc(v):
    """JSON form of a value: strings as hex of their bytes (some are not UTF-8)."""
    if isinstance(v, (bytes, bytearray)):
        return {"hex": bytes(v).hex()}
    if isinstance(v, str):
        return {"hex": v.encode("utf-8").hex()}
    if isinstance(v, list):
        return [enc(x) for x in v]
    return v


def type_of(v):
    """Type description for nested values, as gguf-py infers it (ints are i32, floats f32)."""
    t = T.get_type(v)
    if t == T.ARRAY:
        return "array[" + type_of(v[0]) + "]" if v else "array[?]"
    return NAMES[t]


def write(name, kvs, tensors, alignment=None):
    path = os.path.join(OUT, name + ".gguf")
    w = gguf.GGUFWriter(path, arch="perchtest")
    expected = [{"key": "general.architecture", "type": "string", "value": enc("perchtest")}]
    if alignment is not None:
        w.add_custom_alignment(alignment)
        expected.append({"key": "general.alignment", "type": "u32", "value": alignment})
    for key, vtype, sub, value, desc in kvs:
        w.add_key_value(key, value, vtype, sub_type=sub)
        expected.append({"key": key, "type": desc, "value": enc(value)})
    offset = 0
    align = alignment or 32
    tinfo = []
    for tname, arr, raw in tensors:
        w.add_tensor(tname, arr, raw_dtype=raw)
        nbytes = arr.nbytes
        if raw is not None:
            ty = int(raw)
            dims = list(reversed(gguf.quant_shape_from_byte_shape(arr.shape, raw)))
        else:
            ty = {np.float32: 0, np.float16: 1, np.int8: 24, np.int16: 25, np.int32: 26,
                  np.int64: 27, np.float64: 28}[arr.dtype.type]
            dims = list(reversed(arr.shape))
        tinfo.append({"name": tname, "type": ty, "dims": dims, "offset": offset,
                      "data": arr.tobytes().hex()})
        offset += (nbytes + align - 1) // align * align
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with open(os.path.join(OUT, name + ".json"), "w") as f:
        json.dump({"metadata": expected, "tensors": tinfo}, f, indent=1)
        f.write("\n")
    print(path, os.path.getsize(path), "bytes")


def main():
    os.makedirs(OUT, exist_ok=True)
    scalars = [
        ("t.u8", T.UINT8, None, 250, "u8"),
        ("t.i8", T.INT8, None, -120, "i8"),
        ("t.u16", T.UINT16, None, 65000, "u16"),
        ("t.i16", T.INT16, None, -32000, "i16"),
        ("t.u32", T.UINT32, None, 4000000000, "u32"),
        ("t.i32", T.INT32, None, -2000000000, "i32"),
        ("t.f32", T.FLOAT32, None, -1.5, "f32"),
        ("t.bool_true", T.BOOL, None, True, "bool"),
        ("t.bool_false", T.BOOL, None, False, "bool"),
        ("t.string", T.STRING, None, "héllo, wörld ✓", "string"),
        ("t.empty_string", T.STRING, None, "", "string"),
        ("t.not_utf8", T.STRING, None, b"\xff\xfe<0x80>\xc3", "string"),
        ("t.u64", T.UINT64, None, 18446744073709551615, "u64"),
        ("t.i64", T.INT64, None, -9223372036854775808, "i64"),
        ("t.f64", T.FLOAT64, None, 3.140625, "f64"),
    ]
    arrays = [
        ("a.u8", T.ARRAY, T.UINT8, [0, 1, 255], "array[u8]"),
        ("a.i8", T.ARRAY, T.INT8, [-128, 0, 127], "array[i8]"),
        ("a.u16", T.ARRAY, T.UINT16, [1, 65535], "array[u16]"),
        ("a.i16", T.ARRAY, T.INT16, [-32768, 5], "array[i16]"),
        ("a.u32", T.ARRAY, T.UINT32, [7, 4294967295, 0], "array[u32]"),
        ("a.i32", T.ARRAY, T.INT32, [-1, 2, -3, 4], "array[i32]"),
        ("a.f32", T.ARRAY, T.FLOAT32, [0.5, -2.25, 1e-3], "array[f32]"),
        ("a.bool", T.ARRAY, T.BOOL, [True, False, True], "array[bool]"),
        ("a.string", T.ARRAY, T.STRING, ["a", "", "<|im_start|>", b"\x80\xff"], "array[string]"),
        ("a.u64", T.ARRAY, T.UINT64, [0, 18446744073709551615], "array[u64]"),
        ("a.i64", T.ARRAY, T.INT64, [-9223372036854775808, 9223372036854775807], "array[i64]"),
        ("a.f64", T.ARRAY, T.FLOAT64, [1.0, -0.0, 2.5e-300], "array[f64]"),
    ]
    rng = np.random.default_rng(7)
    tensors = [
        ("f32.weight", rng.standard_normal((2, 3)).astype(np.float32), None),
        ("f16.weight", rng.standard_normal((5,)).astype(np.float16), None),
        ("i8.weight", rng.integers(-128, 127, (7,)).astype(np.int8), None),
        ("q8_0.weight", rng.integers(0, 255, (2, 34)).astype(np.uint8), gguf.GGMLQuantizationType.Q8_0),
        ("i32.weight", np.arange(3, dtype=np.int32), None),
    ]
    write("all_types", scalars + arrays, tensors)

    nested = [
        ("n.ints", T.ARRAY, T.ARRAY, [[1, 2, 3], [4], [-5, 6]], "array[array[i32]]"),
        ("n.mixed", T.ARRAY, T.ARRAY, [[1.5, 2.5], ["x", "yz"], [True]], "array[array[...]]"),
        ("n.deep", T.ARRAY, T.ARRAY, [[[1], [2, 3]], [[4]]], "array[array[array[i32]]]"),
    ]
    write("nested", nested, [("w", np.ones((4, 2), dtype=np.float32), None)], alignment=64)


if __name__ == "__main__":
    sys.exit(main())
