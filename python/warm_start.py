#!/usr/bin/env python3
"""Start the trainer with its heavy imports already done.

The local driver starts this beside the trainer's files while the pre-flight still runs
(the data check's token count, the estimate, the GPU pick), so that importing torch,
transformers, peft and trl (seconds) overlaps it. It then imports and waits for one JSON
line on stdin, the launch it would otherwise exec:

    {"argv": [python, ".../train_lora.py", "--config", ..., "--run-dir", ...],
     "env": ["KEY=value", ...], "cwd": RUN_DIR, "log": RUN_DIR/train.log}

and answers one line on stdout: "ok" when it becomes that trainer (stdout and stderr then
go to the log, the environment is the launch's, argv its arguments), or "declined: why"
when it cannot stand in for a fresh process, after which it exits and the driver starts
the trainer afresh. End of input (the pre-flight refused the run): it exits at once,
having read no data and touched no GPU.

The driver sends only a launch whose environment differs from the one this process
started with in what the pre-flight decides (CUDA_VISIBLE_DEVICES and LORACTL_*, read
after the imports); "cuda_changed" says CUDA_VISIBLE_DEVICES is one of them. This process
declines when that is so and an import has already loaded the CUDA driver or NVML (CUDA
reads the variable once, when it starts), when the script is not the train_lora.py beside
it, or when its imports failed (the fresh start then reports why).

Before the launch, the driver may ask it to run a helper script to its end, the way a
fresh `python SCRIPT ARGV...` would (the data check's token count, which needs the
tokenizer that this process imports anyway, so that the count costs no second
interpreter):

    {"helper": {"script": PATH, "argv": [...], "env": {"KEY": "value"},
                "stdout": PATH, "stderr": PATH}}

It runs SCRIPT as __main__ with that argv and those variables added, its file
descriptors 1 and 2 on the two files, and answers {"helper_exit": N}. The environment,
argv, sys.path and descriptors are restored after it; what it imported stays imported.
A helper asked for while the imports still run waits for them, except that one already
waiting when transformers is in is run then, before torch, peft and trl: the count's
answer comes that much sooner, and the heavy imports go on while the pre-flight does the
rest of its work.

The answers travel on a private copy of the stdout this process started with. Until the
launch, descriptors 1 and 2 point at a temp file, so that a library printing as it
imports cannot garble an answer; at the launch that output goes to the head of the log,
where a fresh trainer would have written it.
"""

import json
import os
import runpy
import select
import sys
import tempfile
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
# Libraries whose load means CUDA_VISIBLE_DEVICES has been read already.
CUDA_LIBS = ("libcuda.so", "libnvidia-ml.so")
# Set by the interpreter itself at its start (C locale coercion, PEP 538): a fresh start
# of the launch would set it the same way.
INTERPRETER_SET = ("LC_CTYPE",)


def environ(pairs):
    """The launch's environment from its KEY=value list (a later KEY wins, as for exec)."""
    env = {}
    for kv in pairs:
        k, sep, v = kv.partition("=")
        if sep:
            env[k] = v
    return env


def cuda_loaded(maps="/proc/self/maps"):
    try:
        with open(maps, encoding="utf-8", errors="replace") as f:
            text = f.read()
    except OSError:
        return True  # cannot tell: assume the worst
    return any(lib in text for lib in CUDA_LIBS)


def decline_reason(req, imported, cuda_libs_loaded):
    """Why this process cannot become the launch req, or "" when it can."""
    if imported is not None:
        return f"the imports failed: {imported}"
    argv = req.get("argv")
    if not isinstance(argv, list) or len(argv) < 2 or not all(isinstance(a, str) for a in argv):
        return "no command"
    if os.path.realpath(argv[1]) != os.path.join(os.path.realpath(HERE), "train_lora.py"):
        return f"{argv[1]} is not the trainer beside this script"
    if not isinstance(req.get("env"), list) or not isinstance(req.get("log"), str) or not isinstance(req.get("cwd"), str):
        return "no environment, log or working directory"
    if req.get("cuda_changed") and cuda_libs_loaded:
        return "CUDA_VISIBLE_DEVICES changed after CUDA was loaded"
    return ""


# Where answers go (the stdout this process started with) and where the output of its
# imports waits for the launch's log; see redirect_until_launch.
_replies = None
_early = None


def redirect_until_launch():
    """Keep the answer pipe to reply() alone: point descriptors 1 and 2 at a temp file."""
    global _replies, _early
    sys.stdout.flush()
    sys.stderr.flush()
    _replies = os.fdopen(os.dup(1), "w", encoding="utf-8")
    _early = tempfile.TemporaryFile()
    os.dup2(_early.fileno(), 1)
    os.dup2(_early.fileno(), 2)


def reply(line):
    _replies.write(line + "\n")
    _replies.flush()


def copy_early(fd):
    """Write what the imports printed before the launch to fd (the log)."""
    if _early is None:
        return
    _early.seek(0)
    while chunk := _early.read(1 << 16):
        os.write(fd, chunk)


def become(req):
    """Take over the launch: its working dir, log, environment and arguments."""
    fd = os.open(req["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    os.chdir(req["cwd"])
    sys.stdout.flush()
    sys.stderr.flush()
    copy_early(fd)
    reply("ok")
    _replies.close()  # the driver reads no more answers
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    env = environ(req["env"])
    for k in INTERPRETER_SET:
        if k in os.environ and k not in env:
            env[k] = os.environ[k]
    os.environ.clear()
    os.environ.update(env)
    sys.argv = req["argv"][1:]


def run_helper(h):
    """Run helper request h as `python SCRIPT ARGV...` would, inside this process; its
    exit status."""
    script, argv, extra = h.get("script"), h.get("argv") or [], h.get("env") or {}
    if not (isinstance(script, str) and isinstance(argv, list) and all(isinstance(a, str) for a in argv)
            and isinstance(extra, dict) and all(isinstance(v, str) for v in extra.values())):
        raise ValueError("bad helper request")
    saved = (list(sys.argv), list(sys.path), dict(os.environ), sys.stdout, sys.stderr)
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW
    out = os.open(h["stdout"], flags, 0o600)
    try:
        err = os.open(h["stderr"], flags, 0o600)
    except OSError:
        os.close(out)
        raise
    sys.stdout.flush()
    sys.stderr.flush()
    # A fresh `python SCRIPT` gets no input: a prompt must not read the request pipe.
    fds = os.dup(0), os.dup(1), os.dup(2)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(out, 1)
    os.dup2(err, 2)
    os.close(null)
    os.close(out)
    os.close(err)
    # Python-level writes go to fresh streams on the redirected descriptors, encoded as the
    # process's own stdio is (whatever sys.stdout was replaced by, if anything).
    sys.stdout, sys.stderr = (open(fd, "w", encoding=getattr(std, "encoding", None) or "utf-8",
                                   errors=getattr(std, "errors", None) or "strict", closefd=False)
                              for fd, std in ((1, sys.__stdout__), (2, sys.__stderr__)))
    code = 0
    try:
        sys.argv = [script, *argv]
        sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
        os.environ.update(extra)
        runpy.run_path(script, run_name="__main__")
    except SystemExit as e:
        code = exit_status(e.code)
        if e.code is not None and not isinstance(e.code, int):
            print(e.code, file=sys.stderr)
    except BaseException:  # noqa: BLE001 - as an uncaught exception ends a fresh interpreter
        traceback.print_exc()
        code = 1
    finally:
        sys.stdout.close()
        sys.stderr.close()
        sys.stdout, sys.stderr = saved[3], saved[4]
        for target, saved_fd in enumerate(fds):
            os.dup2(saved_fd, target)
            os.close(saved_fd)
        sys.argv, sys.path[:] = saved[0], saved[1]
        os.environ.clear()
        os.environ.update(saved[2])
    return code


def exit_status(code):
    """The status a process ending with sys.exit(code) reports to its parent."""
    if code is None:
        return 0
    if isinstance(code, int):  # bool included: sys.exit(True) is 1
        return int(code) & 0xFF
    return 1


def waiting():
    """Whether a request (or the end of input) is there to read without blocking."""
    try:
        return bool(select.select([sys.stdin], [], [], 0)[0])
    except (OSError, ValueError):
        return False


def next_request():
    """The next request: a dict, None at the end of input, or "" when not JSON."""
    line = sys.stdin.readline()
    if not line.strip():
        return None
    try:
        req = json.loads(line)
    except ValueError:
        return ""
    return req if isinstance(req, dict) else ""


def serve_helpers(req, block=True):
    """Run helper requests, from req on, until one that is not; return that one. Not
    blocking, it returns False (nothing read) once no request is waiting."""
    while isinstance(req, dict) and "helper" in req:
        try:
            code = run_helper(req["helper"] if isinstance(req["helper"], dict) else {})
            reply(json.dumps({"helper_exit": code}))
        except (OSError, ValueError, KeyError, TypeError) as e:
            reply(json.dumps({"helper_error": f"{type(e).__name__}: {e}"[:200]}))
        if not block and not waiting():
            return False
        req = next_request()
    return req


def main():
    sys.path.insert(0, HERE)
    redirect_until_launch()
    imported = None
    req = False  # no request read yet
    try:
        import train_lora

        train_lora.import_light()  # what a helper (the token count) needs first
        if waiting():
            # The driver sends one request at a time and waits for its answer, so once
            # none is waiting the pre-flight is still busy: import meanwhile.
            req = serve_helpers(next_request(), block=False)
            if req is None:
                return 0  # refused before launch: skip the heavy imports
        train_lora.import_heavy()
    except Exception as e:  # noqa: BLE001 - any failure: decline, and the fresh start says what it is
        imported = f"{type(e).__name__}: {e}"[:200]
    req = serve_helpers(next_request() if req is False else req)
    if req is None:
        return 0  # refused before launch
    if req == "":
        reply("declined: the request is not JSON")
        return 0
    why = decline_reason(req, imported, cuda_loaded())
    if not why:
        try:
            become(req)
        except OSError as e:
            why = f"cannot take over the launch: {e}"
    if why:
        reply("declined: " + why)
        return 0
    return train_lora.main(sys.argv[1:])


if __name__ == "__main__":
    code = main()
    from train_lora_support import exit_now  # beside this file: main() put HERE on sys.path

    exit_now(code)  # without the 1.3 s module teardown
