"""End-to-end check of perch's embedding endpoints with the official `openai` and `ollama`
Python clients: `client.embeddings.create` (floats and the client's default base64 decoding,
lists, token arrays, dimensions) and `ollama.Client.embed` / `embeddings`, next to a chat model.

Usage: python embed_e2e.py BASE_URL CHAT_MODEL EMBED_MODEL API_KEY [MAX_TOKENS]

MAX_TOKENS is the embedding model's input limit (512 for MiniLM converted to GGUF, 256 for an
ONNX export with sentence-transformers' sentence_bert_config.json beside it).

Run by crates/perch-cli/tests/serve_embed.rs against `perch serve` on loopback. Prints one
line per check and a closing "N passed, N failed" line; exits non-zero when any check fails.
"""

import math
import sys
import traceback

import ollama
import openai

BASE, CHAT, EMB, KEY = sys.argv[1:5]
MAX_TOKENS = int(sys.argv[5]) if len(sys.argv) > 5 else 512
PUBLISHED = [0.067657, 0.063496, 0.048713, 0.079305, 0.037448]
SENTENCE = "This is an example sentence"

oa = openai.OpenAI(base_url=BASE + "/v1", api_key=KEY, max_retries=0, timeout=120)
ol = ollama.Client(host=BASE, headers={"Authorization": "Bearer " + KEY}, timeout=120)
checks = []


def check(fn):
    checks.append(fn)
    return fn


def close(a, b, tol):
    return all(abs(x - y) < tol for x, y in zip(a, b))


@check
def openai_single_input_matches_published_values():
    r = oa.embeddings.create(model=EMB, input=SENTENCE, encoding_format="float")
    v = r.data[0].embedding
    assert len(v) == 384, len(v)
    assert close(v[:5], PUBLISHED, 0.01), v[:5]
    assert r.usage.prompt_tokens == 7 and r.usage.total_tokens == 7, r.usage
    assert r.model == EMB


@check
def openai_float_and_base64_agree():
    f = oa.embeddings.create(model=EMB, input=[SENTENCE, "a cat"], encoding_format="float")
    # Without encoding_format the client asks for base64 and decodes it itself.
    b = oa.embeddings.create(model=EMB, input=[SENTENCE, "a cat"])
    assert [d.index for d in f.data] == [0, 1]
    for x, y in zip(f.data, b.data):
        assert len(y.embedding) == 384
        assert close(x.embedding, y.embedding, 1e-7)


@check
def openai_token_arrays_and_dimensions():
    t = oa.embeddings.create(model=EMB, input=[[101, 2023, 2003, 2019, 2742, 6251, 102]])
    assert close(t.data[0].embedding[:5], PUBLISHED, 0.01)
    d = oa.embeddings.create(model=EMB, input=SENTENCE, dimensions=32, encoding_format="float")
    v = d.data[0].embedding
    assert len(v) == 32 and abs(math.sqrt(sum(x * x for x in v)) - 1) < 1e-5


@check
def openai_errors_are_bad_requests():
    for kwargs, param in [
        (dict(input=""), "input"),
        (dict(input="x", dimensions=4096), "dimensions"),
        (dict(input="word " * 600), "input"),
    ]:
        try:
            oa.embeddings.create(model=EMB, **kwargs)
        except openai.BadRequestError as e:
            assert e.body["param"] == param, e.body
        else:
            raise AssertionError(f"{kwargs} was accepted")
    try:
        oa.embeddings.create(model=CHAT, input="x")
    except openai.BadRequestError as e:
        assert "chat model" in e.body["message"], e.body
    else:
        raise AssertionError("a chat model embedded")
    try:
        oa.chat.completions.create(model=EMB, messages=[{"role": "user", "content": "hi"}])
    except openai.BadRequestError as e:
        assert "embedding model" in e.body["message"], e.body
    else:
        raise AssertionError("an embedding model chatted")


@check
def openai_models_lists_both():
    ids = [m.id for m in oa.models.list().data]
    assert CHAT in ids and EMB in ids, ids


@check
def openai_chat_still_works_beside_the_embedding_model():
    r = oa.chat.completions.create(
        model=CHAT, messages=[{"role": "user", "content": "Say hi."}], max_tokens=4, temperature=0
    )
    assert r.choices[0].message.content


@check
def ollama_embed():
    r = ol.embed(model=EMB, input=[SENTENCE, "a cat"])
    assert len(r.embeddings) == 2
    assert close(r.embeddings[0][:5], PUBLISHED, 0.01)
    assert r.prompt_eval_count == 11, r.prompt_eval_count
    assert r.model == EMB
    long = ol.embed(model=EMB, input="word " * 600)
    assert long.prompt_eval_count == MAX_TOKENS, long.prompt_eval_count
    try:
        ol.embed(model=EMB, input="word " * 600, truncate=False)
    except ollama.ResponseError as e:
        assert e.status_code == 400 and str(MAX_TOKENS) in e.error, e.error
    else:
        raise AssertionError("an over-long input was accepted with truncate=False")


@check
def ollama_legacy_embeddings():
    r = ol.embeddings(model=EMB, prompt=SENTENCE)
    assert close(r.embedding[:5], PUBLISHED, 0.01)


passed = failed = 0
for fn in checks:
    try:
        fn()
        print(f"ok   {fn.__name__}")
        passed += 1
    except Exception:
        print(f"FAIL {fn.__name__}")
        traceback.print_exc(file=sys.stdout)
        failed += 1
print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
