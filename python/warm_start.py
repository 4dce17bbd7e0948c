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
"""

import json
import os
import sys

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


def reply(line):
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def become(req):
    """Take over the launch: its working dir, log, environment and arguments."""
    fd = os.open(req["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    os.chdir(req["cwd"])
    reply("ok")
    sys.stderr.flush()
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


def main():
    sys.path.insert(0, HERE)
    imported = None
    try:
        import train_lora
        train_lora.import_heavy()
    except Exception as e:  # noqa: BLE001 - any failure: decline, and the fresh start says what it is
        imported = f"{type(e).__name__}: {e}"[:200]
    line = sys.stdin.readline()
    if not line.strip():
        return 0  # refused before launch
    try:
        req = json.loads(line)
    except ValueError:
        reply("declined: the request is not JSON")
        return 0
    why = decline_reason(req, imported, cuda_loaded()) if isinstance(req, dict) else "no request"
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
