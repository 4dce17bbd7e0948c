"""serve_openai.py over real HTTP on 127.0.0.1: the canned mode matches the Go test
server's answers, faults are injected as asked, bad requests get 400, and the model mode
generates with a real tiny model (stop vs length, usage, concurrent requests batched)."""

import hashlib
import json
import os
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

import make_tiny_model
import serve_openai
from conftest import EVAL_DATA, PY_DIR, TRAIN_DATA


def start(argv):
    server = serve_openai.build_server(serve_openai.parse_args(argv))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    host, port = server.server_address[:2]
    return server, f"http://{host}:{port}/v1"


@pytest.fixture
def canned():
    servers = []

    def make(*extra):
        s, url = start(["--canned", *extra])
        servers.append(s)
        return url
    yield make
    for s in servers:
        s.shutdown()
        s.server_close()


def post(url, body, headers=None):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(url + "/chat/completions", data=data,
                                 headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, r.read().decode(), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(), dict(e.headers)


def chat(text, **kw):
    return {"model": "m", "messages": [{"role": "system", "content": "sys"}, {"role": "user", "content": text}], **kw}


def test_canned_answer_matches_go_test_server(canned):
    url = canned()
    code, body, _ = post(url, chat("hello there", n=2))
    assert code == 200
    out = json.loads(body)
    want = "answer " + hashlib.sha256(b"hello there").hexdigest()[:8] + " to: hello there"
    assert [c["message"]["content"] for c in out["choices"]] == [want, want]
    assert out["choices"][0]["finish_reason"] == "stop"
    assert out["usage"]["prompt_tokens"] == 3
    with urllib.request.urlopen(url + "/models", timeout=10) as r:
        assert json.loads(r.read())["data"][0]["id"] == "canned"


@pytest.mark.parametrize("fault,code,check", [
    ("429", 429, lambda body, headers: headers.get("Retry-After") == "2"),
    ("500", 500, lambda body, headers: "injected" in body),
    ("malformed", 200, lambda body, headers: body.endswith('"cut')),
    ("length", 200, lambda body, headers: json.loads(body)["choices"][0]["finish_reason"] == "length"),
])
def test_fault_first_attempts_then_answers(canned, fault, code, check):
    url = canned("--fault", fault, "--fault-first", "2", "--retry-after", "2")
    for _ in range(2):
        got, body, headers = post(url, chat("p"))
        assert got == code and check(body, headers), (got, body)
    got, body, _ = post(url, chat("p"))
    assert got == 200 and json.loads(body)["choices"][0]["finish_reason"] == "stop"
    # Another prompt has its own count of attempts.
    got, _, _ = post(url, chat("q"))
    assert got == code


def test_fault_every_nth_request(canned):
    url = canned("--fault", "500", "--fault-every", "3")
    codes = [post(url, chat(f"p{i}"))[0] for i in range(6)]
    assert codes == [200, 200, 500, 200, 200, 500]


@pytest.mark.parametrize("body,msg", [
    (b"not json", "Expecting value"),
    ({"messages": []}, "messages must be a non-empty array"),
    ({"messages": [{"role": "user", "content": 3}]}, "messages[0]"),
    ({"messages": [{"role": "user", "content": "x"}], "max_tokens": 0}, "max_tokens"),
    ({"messages": [{"role": "user", "content": "x"}], "temperature": "hot"}, "temperature"),
    ({"messages": [{"role": "user", "content": "x"}], "n": 99}, "n must be"),
])
def test_bad_requests_get_400(canned, body, msg):
    code, text, _ = post(canned(), body)
    assert code == 400 and msg in json.loads(text)["error"]["message"]


def test_api_key_required(canned, monkeypatch):
    monkeypatch.setenv("SERVE_TEST_KEY", "k-123")
    url = canned("--api-key-env", "SERVE_TEST_KEY")
    assert post(url, chat("p"))[0] == 401
    assert post(url, chat("p"), {"Authorization": "Bearer k-123"})[0] == 200


def test_args_need_exactly_one_source():
    for argv in ([], ["--canned", "/some/dir"], ["--canned", "--fault", "500"]):
        with pytest.raises(SystemExit):
            serve_openai.parse_args(argv)


@pytest.fixture(scope="module")
def model_server(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("tiny-serve"))
    make_tiny_model.main([out, "--data", TRAIN_DATA, "--data", EVAL_DATA, "--chatml"])
    s, url = start([out, "--device", "cpu", "--batch-size", "4", "--batch-wait-ms", "200"])
    yield url
    s.shutdown()
    s.server_close()


def test_model_generates_with_stop_and_length(model_server):
    code, body, _ = post(model_server, chat("how do I upgrade to Acme Plus?", max_tokens=1))
    assert code == 200, body
    out = json.loads(body)
    c = out["choices"][0]
    # One token: either the stop token came first (stop) or the limit cut it (length).
    assert c["finish_reason"] in ("stop", "length")
    assert out["usage"]["completion_tokens"] == 1 and out["usage"]["prompt_tokens"] > 3
    assert "<|im_end|>" not in c["message"]["content"]
    code, body, _ = post(model_server, chat("how do I upgrade to Acme Plus?", max_tokens=24))
    again = json.loads(post(model_server, chat("how do I upgrade to Acme Plus?", max_tokens=24))[1])
    assert json.loads(body)["choices"][0]["message"]["content"] == again["choices"][0]["message"]["content"], \
        "greedy generation must be deterministic"


def test_model_batches_concurrent_requests(model_server):
    prompts = [f"question {i} about my order" for i in range(6)]
    with ThreadPoolExecutor(6) as ex:
        results = list(ex.map(lambda p: post(model_server, chat(p, max_tokens=8)), prompts))
    assert all(code == 200 for code, _, _ in results)
    # Batched or alone, each answer equals the one generated for it on its own (left padding works).
    code, body, _ = post(model_server, chat(prompts[2], max_tokens=8))
    alone = json.loads(body)["choices"][0]["message"]["content"]
    assert json.loads(results[2][1])["choices"][0]["message"]["content"] == alone


def test_cli_prints_listening_line(tmp_path):
    p = subprocess.Popen([sys.executable, os.path.join(PY_DIR, "serve_openai.py"), "--canned"],
                         stdout=subprocess.PIPE, text=True)
    try:
        line = p.stdout.readline()
        assert line.startswith("listening http://127.0.0.1:") and line.rstrip().endswith("/v1")
        code, _, _ = post(line.split()[1], chat("x"))
        assert code == 200
    finally:
        p.terminate()
        p.wait(timeout=10)
