"""Structured outputs and tool calling through the official `openai` (and `ollama`) Python
clients against `perch serve`: `chat.completions.parse` with a pydantic model,
`response_format` json_schema streamed, forced tool calls non-streamed and streamed (the
client's stream accumulator rebuilds the call), a tool result round trip, and 400s for
unsupported schemas.

Usage: python structured_e2e.py BASE_URL MODEL API_KEY

Run by crates/perch-cli/tests/serve.rs. Prints one line per check and a closing
"N passed, N failed" line; exits non-zero when any check fails.
"""

import json
import sys
import traceback
from typing import Literal

import ollama
import openai
from pydantic import BaseModel, Field

BASE, MODEL, KEY = sys.argv[1], sys.argv[2], sys.argv[3]

oa = openai.OpenAI(base_url=BASE + "/v1", api_key=KEY, max_retries=0, timeout=120)
ol = ollama.Client(host=BASE, headers={"Authorization": "Bearer " + KEY}, timeout=120)

checks = []


def check(fn):
    checks.append(fn)
    return fn


class City(BaseModel):
    name: str = Field(max_length=24)
    country: str = Field(max_length=24)
    population: int = Field(ge=0)
    coastal: bool


WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "maxLength": 30},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city", "unit"],
            "additionalProperties": False,
        },
    },
}
QUESTION = {"role": "user", "content": "What is the weather like in Paris today?"}


@check
def parse_with_a_pydantic_model():
    for seed in (1, 2, 3):
        r = oa.chat.completions.parse(
            model=MODEL,
            messages=[{"role": "user", "content": "Tell me about Lisbon."}],
            response_format=City,
            max_tokens=150,
            seed=seed,
        )
        msg = r.choices[0].message
        assert r.choices[0].finish_reason == "stop", r.choices[0].finish_reason
        assert isinstance(msg.parsed, City), msg
        City.model_validate_json(msg.content)


@check
def json_schema_streamed():
    schema = {
        "type": "object",
        "properties": {"colors": {"type": "array", "items": {"type": "string", "maxLength": 12}, "minItems": 2, "maxItems": 3}},
        "required": ["colors"],
        "additionalProperties": False,
    }
    stream = oa.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Name some colors."}],
        response_format={"type": "json_schema", "json_schema": {"name": "colors", "schema": schema, "strict": True}},
        max_tokens=100,
        temperature=0,
        stream=True,
    )
    text, finish = "", None
    for chunk in stream:
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
            finish = chunk.choices[0].finish_reason or finish
    v = json.loads(text)
    assert finish == "stop", finish
    assert 2 <= len(v["colors"]) <= 3 and all(isinstance(c, str) for c in v["colors"]), v


@check
def json_object_mode():
    r = oa.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Describe a dog as JSON."}],
        response_format={"type": "json_object"},
        max_tokens=120,
        temperature=0,
    )
    if r.choices[0].finish_reason == "stop":
        assert isinstance(json.loads(r.choices[0].message.content), dict)


def check_call(call):
    assert call.type == "function", call
    assert call.id.startswith("call_"), call
    assert call.function.name == "get_weather", call
    args = json.loads(call.function.arguments)
    assert set(args) == {"city", "unit"} and args["unit"] in ("celsius", "fahrenheit"), args
    return args


@check
def forced_tool_call_and_round_trip():
    r = oa.chat.completions.create(
        model=MODEL, messages=[QUESTION], tools=[WEATHER], tool_choice="required",
        parallel_tool_calls=False, max_tokens=100, temperature=0,
    )
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls", choice
    assert len(choice.message.tool_calls) == 1, choice.message
    check_call(choice.message.tool_calls[0])
    # The result goes back; the model answers.
    call = choice.message.tool_calls[0]
    r2 = oa.chat.completions.create(
        model=MODEL,
        messages=[
            QUESTION,
            {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
            {"role": "tool", "tool_call_id": call.id, "content": json.dumps({"temperature": 22, "sky": "clear"})},
        ],
        tools=[WEATHER],
        max_tokens=80,
        temperature=0,
    )
    m2 = r2.choices[0].message
    assert m2.content or m2.tool_calls, m2


@check
def named_tool_call_streamed():
    stream = oa.chat.completions.create(
        model=MODEL, messages=[QUESTION], tools=[WEATHER],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        max_tokens=100, temperature=0, stream=True,
    )
    calls, finish = {}, None
    for chunk in stream:
        if not chunk.choices:
            continue
        d = chunk.choices[0].delta
        for tc in d.tool_calls or []:
            c = calls.setdefault(tc.index, {"id": None, "name": "", "arguments": ""})
            if tc.id:
                c["id"] = tc.id
            if tc.function and tc.function.name:
                c["name"] += tc.function.name
            if tc.function and tc.function.arguments:
                c["arguments"] += tc.function.arguments
        finish = chunk.choices[0].finish_reason or finish
    assert finish == "tool_calls", finish
    assert len(calls) >= 1, calls
    c = calls[0]
    assert c["id"].startswith("call_") and c["name"] == "get_weather", c
    args = json.loads(c["arguments"])
    assert set(args) == {"city", "unit"}, args


@check
def stream_accumulator_of_the_sdk():
    # The SDK's own streaming helper rebuilds tool calls from the deltas.
    with oa.chat.completions.stream(
        model=MODEL, messages=[QUESTION], tools=[WEATHER], tool_choice="required", max_tokens=100, temperature=0,
    ) as s:
        final = s.get_final_completion()
    msg = final.choices[0].message
    assert msg.tool_calls, msg
    check_call(msg.tool_calls[0])


@check
def ollama_tools_and_format():
    r = ol.chat(model=MODEL, messages=[QUESTION], tools=[WEATHER], options={"temperature": 0, "num_predict": 100})
    calls = r.message.tool_calls or []
    for c in calls:
        assert c.function.name == "get_weather", c
        assert isinstance(c.function.arguments, dict), c
    assert calls or r.message.content, r
    r = ol.chat(model=MODEL, messages=[{"role": "user", "content": "Tell me about Rome."}], format=City.model_json_schema(),
                options={"temperature": 0, "num_predict": 150})
    City.model_validate_json(r.message.content)


@check
def unsupported_schemas_are_400s():
    for bad in (
        {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object", "not": {"required": ["a"]}}}},
        {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "string", "format": "ipv6"}}},
    ):
        try:
            oa.chat.completions.create(model=MODEL, messages=[QUESTION], response_format=bad, max_tokens=5)
        except openai.BadRequestError as e:
            assert e.status_code == 400
            assert "not" in str(e) or "ipv6" in str(e), str(e)
        else:
            raise AssertionError(f"{bad} was accepted")
    try:
        oa.chat.completions.create(
            model=MODEL, messages=[QUESTION], max_tokens=5,
            tools=[{"type": "function", "function": {"name": "f", "parameters": {"type": "array", "uniqueItems": True}}}],
        )
    except openai.BadRequestError as e:
        assert "uniqueItems" in str(e), str(e)
    else:
        raise AssertionError("an unsupported tool schema was accepted")


@check
def a_grammar_that_cannot_finish_reports_length():
    r = oa.chat.completions.create(
        model=MODEL, messages=[QUESTION], max_tokens=3,
        response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": {
            "type": "object", "properties": {"a_required_property": {"type": "string"}}, "required": ["a_required_property"]}}},
    )
    assert r.choices[0].finish_reason == "length", r.choices[0]


passed = failed = 0
for fn in checks:
    try:
        fn()
        passed += 1
        print(f"ok   {fn.__name__}")
    except Exception:
        failed += 1
        print(f"FAIL {fn.__name__}")
        traceback.print_exc()
print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
