"""An OpenAI-compatible chat completions server for a local model directory.

    python serve_openai.py MODEL_DIR [--host 127.0.0.1] [--port 0] [--batch-size 8]
        [--max-new-tokens 256] [--model-name NAME] [--api-key-env NAME]
    python serve_openai.py --canned [...]            deterministic answers, no model
    fault injection: --fault 429|500|slow|malformed|length [--fault-first N | --fault-every N]
        [--retry-after SECONDS] [--slow-seconds S]

Serves POST /v1/chat/completions and GET /v1/models on 127.0.0.1 (by default), generating
with python/generation.py: the chat template the trainer uses, greedy unless the request
has a temperature > 0, stopping at eos and the template's end-of-turn token. Requests that
arrive together are generated as one batch (up to --batch-size, on the GPU when there is
one). finish_reason is "stop" when a stop token ended the answer and "length" when
max_tokens did; usage counts prompt and completion tokens.

`loractl distill --teacher MODEL_DIR` starts this server on a free port and sends its
requests through the same client as to any remote endpoint. The first line on stdout is
`listening http://HOST:PORT/v1` once the model is loaded.

--canned answers "answer <8 hex of sha256(last user turn)> to: <last user turn>", as the Go
test server (llm/llmtest) does, for tests that need the protocol but not a model.
"""

import argparse
import hashlib
import json
import os
import queue
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

FAULTS = ("429", "500", "slow", "malformed", "length")


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("model_dir", nargs="?", help="local model directory (not with --canned)")
    p.add_argument("--canned", action="store_true", help="deterministic canned answers, no model")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0: a free port")
    p.add_argument("--model-name", default="", help="the model id /v1/models reports (default: the directory name)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--batch-wait-ms", type=float, default=20.0,
                   help="how long the first request of a batch waits for others")
    p.add_argument("--max-new-tokens", type=int, default=256, help="used when a request has no max_tokens")
    p.add_argument("--max-tokens-limit", type=int, default=8192, help="the largest max_tokens accepted")
    p.add_argument("--device", default=None, help="cuda, cpu, ... (default: the GPU when there is one)")
    p.add_argument("--api-key-env", default="", help="require this variable's value as the Bearer token")
    p.add_argument("--fault", choices=FAULTS, help="inject this fault")
    p.add_argument("--fault-first", type=int, default=0, help="into the first N attempts of each prompt")
    p.add_argument("--fault-every", type=int, default=0, help="into every Nth request")
    p.add_argument("--retry-after", default="1", help="Retry-After header sent with 429")
    p.add_argument("--slow-seconds", type=float, default=5.0)
    p.add_argument("--verbose", action="store_true", help="log every request on stderr")
    a = p.parse_args(argv)
    if a.canned == bool(a.model_dir):
        p.error("give MODEL_DIR or --canned (one of them)")
    if a.batch_size < 1 or a.max_new_tokens < 1 or a.max_tokens_limit < 1:
        p.error("--batch-size, --max-new-tokens and --max-tokens-limit must be >= 1")
    if a.fault and not (a.fault_first or a.fault_every):
        p.error("--fault needs --fault-first N or --fault-every N")
    if a.fault_first < 0 or a.fault_every < 0:
        p.error("--fault-first and --fault-every must be >= 0")
    if a.api_key_env and not os.environ.get(a.api_key_env):
        p.error(f"--api-key-env {a.api_key_env}: the variable is not set")
    return a


def canned_answer(messages):
    last = last_user(messages)
    return "answer " + hashlib.sha256(last.encode("utf-8")).hexdigest()[:8] + " to: " + last


def last_user(messages):
    for m in reversed(messages):
        if m.get("role") == "user":
            return m.get("content", "")
    return ""


class BadRequest(Exception):
    pass


def check_request(body, limit, default_max):
    """(messages, max_tokens, temperature, n, seed) from a request body, or BadRequest."""
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    msgs = body.get("messages")
    if not isinstance(msgs, list) or not msgs:
        raise BadRequest("messages must be a non-empty array")
    for i, m in enumerate(msgs):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
            raise BadRequest(f"messages[{i}] must be {{\"role\": string, \"content\": string}}")
    mt = body.get("max_tokens", body.get("max_completion_tokens"))
    if mt is None:
        mt = default_max
    if not isinstance(mt, int) or isinstance(mt, bool) or not 1 <= mt <= limit:
        raise BadRequest(f"max_tokens must be an integer in 1..{limit}")
    temp = body.get("temperature", 0.0)
    if temp is None:
        temp = 0.0
    if not isinstance(temp, (int, float)) or isinstance(temp, bool) or not 0 <= temp <= 2:
        raise BadRequest("temperature must be a number in [0, 2]")
    n = body.get("n", 1) or 1
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= 16:
        raise BadRequest("n must be an integer in 1..16")
    seed = body.get("seed")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
        raise BadRequest("seed must be an integer")
    return [{"role": m["role"], "content": m["content"]} for m in msgs], mt, float(temp), n, seed


class Job:
    def __init__(self, messages, max_tokens, temperature, seed):
        self.messages, self.max_tokens, self.temperature, self.seed = messages, max_tokens, temperature, seed
        self.done = threading.Event()
        self.result = None
        self.error = None


class Batcher:
    """Collects concurrent requests into batches for Generator.generate, grouped by the
    generation settings a batch must share (max_tokens, temperature, seed)."""

    def __init__(self, model, tokenizer, batch_size, wait_s):
        self.model, self.tokenizer = model, tokenizer
        self.batch_size, self.wait_s = batch_size, wait_s
        self.q = queue.Queue()
        threading.Thread(target=self._loop, name="batcher", daemon=True).start()

    def submit(self, job):
        self.q.put(job)
        job.done.wait()
        if job.error is not None:
            raise job.error
        return job.result

    def _loop(self):
        while True:
            batch = [self.q.get()]
            deadline = time.monotonic() + self.wait_s
            while len(batch) < self.batch_size:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    batch.append(self.q.get(timeout=left))
                except queue.Empty:
                    break
            groups = {}
            for job in batch:
                groups.setdefault((job.max_tokens, job.temperature, job.seed), []).append(job)
            for (mt, temp, seed), jobs in groups.items():
                self._run(jobs, mt, temp, seed)

    def _run(self, jobs, max_tokens, temperature, seed):
        from generation import Generator, prompt_ids
        try:
            gen = Generator(self.model, self.tokenizer, max_new_tokens=max_tokens, batch_size=len(jobs),
                            do_sample=temperature > 0, temperature=temperature if temperature > 0 else None,
                            seed=seed)
            results = gen.generate([j.messages for j in jobs], adapter=True)
            for j, r in zip(jobs, results):
                r["prompt_tokens"] = len(prompt_ids(self.tokenizer, j.messages))
                j.result = r
        except Exception as e:  # noqa: BLE001 - every waiting request gets the error (HTTP 500)
            for j in jobs:
                j.error = e
        for j in jobs:
            j.done.set()


class State:
    def __init__(self, args, batcher):
        self.args = args
        self.batcher = batcher
        self.lock = threading.Lock()
        self.attempts = {}
        self.total = 0
        self.key = os.environ.get(args.api_key_env, "") if args.api_key_env else ""

    def fault_for(self, prompt):
        a = self.args
        with self.lock:
            attempt = self.attempts.get(prompt, 0)
            self.attempts[prompt] = attempt + 1
            self.total += 1
            total = self.total
        if not a.fault:
            return None
        if a.fault_first and attempt < a.fault_first:
            return a.fault
        if a.fault_every and total % a.fault_every == 0:
            return a.fault
        return None


def make_handler(state, model_name):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *args):
            if state.args.verbose:
                sys.stderr.write("serve_openai: " + (fmt % args) + "\n")

        def _send(self, code, obj=None, raw=None, headers=None):
            body = raw if raw is not None else json.dumps(obj).encode("utf-8")
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)

        def _error(self, code, msg, headers=None):
            self._send(code, {"error": {"message": msg, "code": code}}, headers=headers)

        def do_GET(self):
            if self.path.rstrip("/") in ("/v1/models", "/models"):
                self._send(200, {"object": "list", "data": [{"id": model_name, "object": "model", "owned_by": "local"}]})
            elif self.path.rstrip("/") in ("/health", "/v1/health"):
                self._send(200, {"status": "ok"})
            else:
                self._error(404, "not found")

        def do_POST(self):
            if self.path.rstrip("/") not in ("/v1/chat/completions", "/chat/completions"):
                self._error(404, "not found")
                return
            if state.key and self.headers.get("Authorization", "") != "Bearer " + state.key:
                self._error(401, "invalid api key")
                return
            try:
                length = int(self.headers.get("Content-Length", "0"))
            except ValueError:
                length = -1
            if not 0 < length <= 64 << 20:
                self._error(400, "a JSON body with Content-Length is required (64 MiB at most)")
                return
            try:
                body = json.loads(self.rfile.read(length))
                messages, max_tokens, temperature, n, seed = check_request(
                    body, state.args.max_tokens_limit, state.args.max_new_tokens)
            except (ValueError, BadRequest) as e:
                self._error(400, str(e))
                return
            fault = state.fault_for(last_user(messages))
            if fault == "429":
                self._error(429, "rate limited", headers={"Retry-After": state.args.retry_after})
                return
            if fault == "500":
                self._error(500, "injected server error")
                return
            if fault == "malformed":
                self._send(200, raw=b'{"id": "chatcmpl-x", "choices": [{"message": {"content": "cut')
                return
            if fault == "slow":
                time.sleep(state.args.slow_seconds)
            try:
                choices, usage = self._generate(messages, max_tokens, temperature, n, seed)
            except Exception as e:  # noqa: BLE001 - reported to the client as a server error
                self._error(500, f"generation failed: {type(e).__name__}: {e}")
                return
            if fault == "length":
                for c in choices:
                    c["message"]["content"] = c["message"]["content"][:8]
                    c["finish_reason"] = "length"
            self._send(200, {"id": "chatcmpl-" + hashlib.sha256(os.urandom(8)).hexdigest()[:24],
                             "object": "chat.completion", "created": int(time.time()), "model": model_name,
                             "choices": choices, "usage": usage})

        def _generate(self, messages, max_tokens, temperature, n, seed):
            if state.batcher is None:
                text = canned_answer(messages)
                words = len(text.split())
                prompt = sum(len(m["content"].split()) for m in messages)
                choices = [{"index": i, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
                           for i in range(n)]
                return choices, {"prompt_tokens": prompt, "completion_tokens": words * n,
                                 "total_tokens": prompt + words * n}
            # n samples are n jobs: the batcher puts them in one batch when it can.
            jobs = [Job(messages, max_tokens, temperature, None if seed is None else seed + i) for i in range(n)]
            results = [None] * n
            threads = []
            for i, job in enumerate(jobs):
                def work(i=i, job=job):
                    try:
                        results[i] = state.batcher.submit(job)
                    except Exception as e:  # noqa: BLE001
                        results[i] = e
                t = threading.Thread(target=work, daemon=True)
                t.start()
                threads.append(t)
            for t in threads:
                t.join()
            for r in results:
                if isinstance(r, Exception):
                    raise r
            choices = [{"index": i, "message": {"role": "assistant", "content": r["text"]},
                        "finish_reason": "stop" if r["stopped"] == "eos" else "length"} for i, r in enumerate(results)]
            completion = sum(r["tokens"] for r in results)
            prompt = results[0]["prompt_tokens"]
            return choices, {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}

    return Handler


def build_server(args):
    batcher = None
    name = args.model_name or "canned"
    if not args.canned:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        from generation import load_model
        resolved = {"model": {"name_or_path": args.model_dir}, "train": {"precision": "auto"}}
        model, tokenizer = load_model(resolved, None, device=args.device)
        batcher = Batcher(model, tokenizer, args.batch_size, args.batch_wait_ms / 1000.0)
        name = args.model_name or os.path.basename(os.path.normpath(args.model_dir))
        param = next(model.parameters())
        sys.stderr.write(f"serve_openai: {name} on {param.device} ({str(param.dtype).replace('torch.', '')}), "
                         f"batches of up to {args.batch_size}\n")
    server = Server((args.host, args.port), make_handler(State(args, batcher), name))
    return server


class Server(ThreadingHTTPServer):
    # A client with 64+ requests in flight connects all at once: the default listen
    # backlog of 5 overflows and connections are reset.
    request_queue_size = 1024
    daemon_threads = True

    def handle_error(self, request, client_address):
        # A client that gave up (its timeout) closes the connection before the answer is
        # written: expected with --fault slow, not worth a traceback.
        if isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            return
        super().handle_error(request, client_address)


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    server = build_server(args)
    host, port = server.server_address[:2]
    print(f"listening http://{host}:{port}/v1", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
