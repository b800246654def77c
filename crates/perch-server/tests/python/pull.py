"""`POST /api/pull` of a real `perch serve` with the official `ollama` Python client and raw
HTTP: Ollama's progress statuses in order, digests, totals, `stream: false`, and errors.

Usage: python pull.py BASE_URL HF_REPO GGUF_URL GGUF_PATH

HF_REPO is `hf.co/OWNER/REPO` on a loopback imitation of the hub whose only GGUF is a Q4_1
file; GGUF_URL is a plain URL of the same file. Run by crates/perch-cli/tests/pull.rs. Prints
one line per check and a closing "N passed, N failed" line; exits non-zero when any fails.
Also checks `ollama.create` (from_=, system=, files= after create_blob) on the same server,
with GGUF_PATH (a local GGUF file) as the uploaded blob.
"""

import http.client
import json
import re
import sys
import traceback
import urllib.parse

import ollama

BASE, REPO, URL, GGUF = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
NAME = REPO + ":Q4_1"
ol = ollama.Client(host=BASE, timeout=300)
checks = []


def check(fn):
    checks.append(fn)
    return fn


def raw(method, path, body=None):
    u = urllib.parse.urlparse(BASE)
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=300)
    data = None if body is None else json.dumps(body)
    c.request(method, path, body=data, headers={"Content-Type": "application/json"})
    r = c.getresponse()
    return r.status, dict((k.lower(), v) for k, v in r.getheaders()), r.read()


@check
def ollama_client_streams_pull_progress():
    events = list(ol.pull(NAME, stream=True))
    statuses = [e.status for e in events]
    assert statuses[0] == "pulling manifest", statuses
    assert statuses[-3:] == ["verifying sha256 digest", "writing manifest", "success"], statuses
    downloads = [e for e in events if e.status.startswith("pulling ") and e.status != "pulling manifest"]
    assert len(downloads) >= 2, statuses
    for e in downloads:
        assert re.fullmatch(r"sha256:[0-9a-f]{64}", e.digest), e
        assert e.status == "pulling " + e.digest[7:19], e
        assert e.total and e.total > 90_000_000, e
    done = [e.completed or 0 for e in downloads]
    assert done == sorted(done), done
    assert done[-1] == downloads[-1].total, (done[-1], downloads[-1].total)


@check
def pulled_model_is_listed_and_generates():
    names = [m.model for m in ol.list().models]
    assert NAME in names, names
    r = ol.generate(model=NAME, prompt="Hello", options={"num_predict": 3, "temperature": 0})
    assert r.done and r.eval_count >= 1, r


@check
def raw_ndjson_stream_of_a_url_pull():
    status, headers, body = raw("POST", "/api/pull", {"model": URL})
    assert status == 200, (status, body)
    assert headers["content-type"].startswith("application/x-ndjson"), headers
    lines = body.decode().splitlines()
    objs = [json.loads(l) for l in lines]
    assert all(set(o) <= {"status", "digest", "total", "completed"} for o in objs), objs
    assert objs[0] == {"status": "pulling manifest"}, objs[0]
    assert objs[-1] == {"status": "success"}, objs[-1]
    assert {"status": "verifying sha256 digest"} in objs and {"status": "writing manifest"} in objs
    pulls = [o for o in objs if "total" in o]
    assert pulls and pulls[-1]["completed"] == pulls[-1]["total"], pulls[-1:]


@check
def stream_false_gives_one_object():
    status, _, body = raw("POST", "/api/pull", {"model": NAME, "stream": False})
    assert status == 200, (status, body)
    assert json.loads(body) == {"status": "success"}, body


@check
def unknown_quantization_is_an_error_listing_the_files():
    status, _, body = raw("POST", "/api/pull", {"model": REPO + ":Q2_K", "stream": False})
    assert status == 404, (status, body)
    msg = json.loads(body)["error"]
    assert "Q2_K" in msg and ".gguf" in msg, msg
    # Streamed, the error is the last line after "pulling manifest", as Ollama sends it.
    status, _, body = raw("POST", "/api/pull", {"model": REPO + ":Q2_K"})
    objs = [json.loads(l) for l in body.decode().splitlines()]
    assert status == 200 and objs[0] == {"status": "pulling manifest"}, (status, objs)
    assert "Q2_K" in objs[-1]["error"], objs
    try:
        list(ol.pull(REPO + ":Q2_K", stream=True))
        raise AssertionError("no error raised")
    except ollama.ResponseError as e:
        assert "Q2_K" in e.error, (e.status_code, e.error)


@check
def bad_references_and_unknown_names_are_400():
    for model in ["hf.co/only-owner", "no-such-model"]:
        status, _, body = raw("POST", "/api/pull", {"model": model})
        assert status == 400, (model, status, body)
        assert json.loads(body)["error"], body
    status, _, body = raw("POST", "/api/pull", {})
    assert status == 400, (status, body)


@check
def ollama_create_from_a_model_and_from_an_uploaded_blob():
    r = ol.create(model="terse", from_=NAME, system="Answer in one word.", parameters={"temperature": 0}, stream=False)
    assert r.status == "success", r
    shown = ol.show("terse")
    assert "temperature" in (shown.parameters or ""), shown.parameters
    status, _, body = raw("POST", "/api/show", {"model": "terse"})
    assert status == 200 and json.loads(body)["system"] == "Answer in one word.", body
    digest = ol.create_blob(GGUF)
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", digest), digest
    status, _, _ = raw("HEAD", "/api/blobs/" + digest)
    assert status == 200, status
    events = list(ol.create(model="uploaded", files={"model.gguf": digest}, system="Be brief.", stream=True))
    assert [e.status for e in events][-2:] == ["writing manifest", "success"], events
    names = [m.model for m in ol.list().models]
    assert "uploaded:latest" in names and "terse:latest" in names, names
    r = ol.chat(model="uploaded", messages=[{"role": "user", "content": "Hi"}], options={"num_predict": 3})
    assert r.done, r
    # A digest that does not match the bytes is refused.
    status, _, body = raw("POST", "/api/blobs/sha256:" + "0" * 64, {"not": "the model"})
    assert status == 400 and b"nothing was stored" in body, (status, body)


passed = failed = 0
for fn in checks:
    try:
        fn()
        passed += 1
        print(f"ok   {fn.__name__}")
    except Exception:
        failed += 1
        print(f"FAIL {fn.__name__}")
        traceback.print_exc(file=sys.stdout)
print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
