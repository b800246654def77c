"""End-to-end check of `perch serve` with the official `openai` and `ollama` Python clients
and raw HTTP (the SSE and NDJSON framing as curl sees it).

Usage: python e2e.py BASE_URL MODEL API_KEY

Run by crates/perch-cli/tests/serve_e2e.rs against a real server on loopback. Prints one
line per check and a closing "N passed, N failed" line; exits non-zero when any check fails.
"""

import concurrent.futures
import http.client
import json
import re
import socket
import sys
import time
import traceback
import urllib.parse

import ollama
import openai

BASE, MODEL, KEY = sys.argv[1], sys.argv[2], sys.argv[3]
SYSTEM = {"role": "system", "content": "You are a helpful assistant."}
QUESTION = {"role": "user", "content": "What is the capital of France?"}

oa = openai.OpenAI(base_url=BASE + "/v1", api_key=KEY, max_retries=0, timeout=120)
ol = ollama.Client(host=BASE, headers={"Authorization": "Bearer " + KEY}, timeout=120)

checks = []


def check(fn):
    checks.append(fn)
    return fn


def raw(method, path, body=None, key=KEY):
    """One HTTP request; returns (status, headers, body bytes)."""
    u = urllib.parse.urlparse(BASE)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=120)
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = "Bearer " + key
    conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
    r = conn.getresponse()
    data = r.read()
    conn.close()
    return r.status, dict(r.getheaders()), data


@check
def openai_chat_greedy():
    r = oa.chat.completions.create(model=MODEL, messages=[SYSTEM, QUESTION], temperature=0, max_tokens=24)
    text = r.choices[0].message.content
    assert "Paris" in text, text
    assert r.choices[0].finish_reason == "stop", r.choices[0].finish_reason
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    return text


@check
def openai_chat_stream_with_usage():
    whole = oa.chat.completions.create(model=MODEL, messages=[SYSTEM, QUESTION], temperature=0, max_tokens=24)
    stream = oa.chat.completions.create(
        model=MODEL,
        messages=[SYSTEM, QUESTION],
        temperature=0,
        max_tokens=24,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content, (text, whole.choices[0].message.content)
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"], finishes
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens


@check
def openai_completions():
    r = oa.completions.create(model=MODEL, prompt="The capital of France is", max_tokens=5, temperature=0)
    assert "Paris" in r.choices[0].text, r.choices[0].text
    assert r.usage.completion_tokens == 5


@check
def openai_models_list():
    ids = [m.id for m in oa.models.list()]
    assert MODEL in ids, ids
    assert oa.models.retrieve(MODEL).id == MODEL


@check
def openai_errors():
    try:
        oa.chat.completions.create(model="no-such-model", messages=[QUESTION])
        raise AssertionError("no error for an unknown model")
    except openai.NotFoundError as e:
        assert e.status_code == 404
    try:
        oa.chat.completions.create(model=MODEL, messages=[QUESTION], temperature=5)
        raise AssertionError("no error for temperature 5")
    except openai.BadRequestError as e:
        assert e.body["param"] == "temperature", e.body
    bad = openai.OpenAI(base_url=BASE + "/v1", api_key="wrong", max_retries=0)
    try:
        bad.models.list()
        raise AssertionError("no error for a wrong key")
    except openai.AuthenticationError as e:
        assert e.status_code == 401


@check
def ollama_chat():
    r = ol.chat(model=MODEL, messages=[SYSTEM, QUESTION], options={"temperature": 0, "num_predict": 24}, stream=False)
    assert "Paris" in r.message.content, r.message.content
    assert r.done and r.done_reason == "stop", r
    assert r.eval_count > 0 and r.total_duration > 0
    parts = list(ol.chat(model=MODEL, messages=[SYSTEM, QUESTION], options={"temperature": 0, "num_predict": 24}, stream=True))
    assert parts[-1].done and not any(p.done for p in parts[:-1])
    assert "".join(p.message.content for p in parts) == r.message.content


@check
def ollama_generate():
    r = ol.generate(model=MODEL, prompt="The capital of France is", raw=True, options={"temperature": 0, "num_predict": 4})
    assert "Paris" in r.response, r.response
    assert r.done_reason == "length" and r.eval_count == 4, r


@check
def ollama_list_show_ps():
    names = [m.model for m in ol.list().models]
    assert MODEL + ":latest" in names, names
    s = ol.show(MODEL)
    assert s.details.family == "llama", s.details
    assert s.modelinfo["general.architecture"] == "llama"
    loaded = [m.model for m in ol.ps().models]
    assert MODEL + ":latest" in loaded, loaded
    try:
        ol.show("no-such-model")
        raise AssertionError("no error for an unknown model")
    except ollama.ResponseError as e:
        assert e.status_code == 404


@check
def raw_sse_framing():
    status, headers, body = raw("POST", "/v1/chat/completions", {
        "model": MODEL, "messages": [QUESTION], "max_tokens": 4, "temperature": 0, "stream": True,
    })
    assert status == 200 and headers["content-type"].startswith("text/event-stream"), (status, headers)
    events = [e for e in body.decode().split("\n\n") if e.strip()]
    data = [e[len("data: "):] for e in events if e.startswith("data: ")]
    assert data[-1] == "[DONE]", data[-1]
    first = json.loads(data[0])
    assert first["choices"][0]["delta"]["role"] == "assistant"
    assert json.loads(data[-2])["choices"][0]["finish_reason"] in ("stop", "length")


@check
def raw_ndjson_framing():
    status, headers, body = raw("POST", "/api/generate", {
        "model": MODEL, "prompt": "Hi", "options": {"num_predict": 4, "temperature": 0},
    })
    assert status == 200 and headers["content-type"] == "application/x-ndjson", headers
    lines = [json.loads(l) for l in body.decode().splitlines() if l.strip()]
    assert lines[-1]["done"] is True and all(not l["done"] for l in lines[:-1])


@check
def raw_errors_and_health():
    status, _, body = raw("POST", "/v1/chat/completions", None, key=None)
    assert status == 401, status
    status, _, body = raw("GET", "/health", key=None)
    assert status == 200 and json.loads(body)["status"] == "ok"
    status, _, body = raw("GET", "/metrics")
    assert status == 200 and b"perch_kv_blocks" in body


def kv_used():
    """KV blocks in use, summed over the loaded models, from /metrics."""
    _, _, body = raw("GET", "/metrics")
    return sum(
        float(v)
        for v in re.findall(r'^perch_kv_blocks\{model="[^"]*",state="used"\} (\S+)$', body.decode(), re.M)
    )


def wait_kv_free(timeout=20):
    deadline = time.time() + timeout
    while kv_used() != 0:
        assert time.time() < deadline, f"KV blocks still in use: {kv_used()}"
        time.sleep(0.05)


@check
def thirty_two_concurrent_streams():
    def one(i):
        stream = oa.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": f"Tell me a fact about the number {i}."}],
            max_tokens=8,
            stream=True,
        )
        chunks = list(stream)
        assert chunks[0].choices[0].delta.role == "assistant"
        assert chunks[-1].choices[0].finish_reason in ("stop", "length")
        return "".join(c.choices[0].delta.content or "" for c in chunks)

    with concurrent.futures.ThreadPoolExecutor(32) as pool:
        texts = list(pool.map(one, range(32)))
    assert len(texts) == 32 and all(texts), texts
    wait_kv_free()


@check
def client_dropped_mid_stream_frees_kv_blocks():
    u = urllib.parse.urlparse(BASE)
    body = json.dumps({
        "model": MODEL, "messages": [{"role": "user", "content": "Write a long story about a dragon."}],
        "max_tokens": 500, "stream": True,
    }).encode()
    s = socket.create_connection((u.hostname, u.port), timeout=60)
    s.sendall(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + KEY.encode()
        + b"\r\nContent-Type: application/json\r\nContent-Length: " + str(len(body)).encode()
        + b"\r\n\r\n" + body
    )
    got = b""
    while got.count(b"data: ") < 5:
        chunk = s.recv(4096)
        assert chunk, "the server closed the stream early"
        got += chunk
    assert kv_used() > 0, "the generation holds KV blocks while streaming"
    s.close()  # the client goes away mid-stream
    # Freed within a moment: the remaining ~495 tokens would take far longer to generate.
    wait_kv_free(timeout=3)


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
