"""warm_start.py: when a process that imported ahead of its launch may become the trainer."""

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import warm_start  # noqa: E402

TRAINER = os.path.join(warm_start.HERE, "train_lora.py")


def req(**over):
    r = {"argv": [sys.executable, TRAINER, "--config", "c", "--run-dir", "d"], "env": ["A=1"], "cwd": "/", "log": "/l"}
    r.update(over)
    return r


@pytest.mark.parametrize("request_, imported, cuda_libs, want", [
    (req(), None, False, ""),
    (req(cuda_changed=True), None, False, ""),
    (req(cuda_changed=False), None, True, ""),
    (req(cuda_changed=True), None, True, "CUDA_VISIBLE_DEVICES changed after CUDA was loaded"),
    (req(), "ImportError: no torch", False, "the imports failed"),
    (req(argv=[sys.executable, "/elsewhere/train_lora.py"]), None, False, "is not the trainer beside"),
    (req(argv=[sys.executable]), None, False, "no command"),
    (req(env=None), None, False, "no environment"),
])
def test_decline_reason(request_, imported, cuda_libs, want):
    got = warm_start.decline_reason(request_, imported, cuda_libs)
    assert (got == "") == (want == "") and want in got


def test_cuda_loaded_reads_the_maps(tmp_path):
    maps = tmp_path / "maps"
    maps.write_text("7f00 r-xp /usr/lib/x86_64-linux-gnu/libc.so.6\n")
    assert not warm_start.cuda_loaded(str(maps))
    maps.write_text("7f00 r-xp /usr/lib/x86_64-linux-gnu/libcuda.so.550.54\n")
    assert warm_start.cuda_loaded(str(maps))
    assert warm_start.cuda_loaded(str(tmp_path / "missing"))  # cannot tell: assume loaded


def test_environ_later_key_wins():
    assert warm_start.environ(["A=1", "B=x=y", "A=2", "junk"]) == {"A": "2", "B": "x=y"}


def test_the_trainers_imports_leave_cuda_unloaded():
    """What the warm process imports must not start CUDA: the GPU is picked after it."""
    import subprocess
    code = ("import train_lora, warm_start; train_lora.import_heavy(); import torch; "
            "print(torch.cuda.is_initialized() or warm_start.cuda_loaded())")
    out = subprocess.run([sys.executable, "-c", code], cwd=warm_start.HERE, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "False"


HELPER = """import os, sys
print("out", sys.argv[1:], os.environ.get("HELPER_VAR"))
print("err line", file=sys.stderr)
sys.stdout.flush()
os.write(2, b"fd-level err\\n")
what = sys.argv[1]
if what == "exit3":
    sys.exit(3)
if what == "raise":
    raise RuntimeError("boom")
if what == "message":
    sys.exit("a message")
"""


@pytest.mark.parametrize("what, code, err_has", [
    ("ok", 0, "fd-level err"),
    ("exit3", 3, "err line"),
    ("raise", 1, "RuntimeError: boom"),
    ("message", 1, "a message"),
])
def test_run_helper_is_a_fresh_interpreters_run(tmp_path, what, code, err_has):
    """A helper run in the warm process ends with the status, output and errors a fresh
    `python SCRIPT ARGV` gives, and leaves argv, sys.path and the environment as they were."""
    script = tmp_path / "helper.py"
    script.write_text(HELPER)
    out, err = tmp_path / "out", tmp_path / "err"
    before = (list(sys.argv), list(sys.path), dict(os.environ))
    got = warm_start.run_helper({"script": str(script), "argv": [what], "env": {"HELPER_VAR": "set"},
                                 "stdout": str(out), "stderr": str(err)})
    assert got == code
    assert out.read_text() == f"out ['{what}'] set\n"
    assert err_has in err.read_text()
    assert (list(sys.argv), list(sys.path), dict(os.environ)) == before
    fresh = __import__("subprocess").run([sys.executable, str(script), what], capture_output=True, text=True,
                                         env={**os.environ, "HELPER_VAR": "set"})
    assert fresh.returncode == code and fresh.stdout == out.read_text()


@pytest.mark.parametrize("bad", [
    {"script": 1, "stdout": "o", "stderr": "e"},
    {"script": "s", "argv": [1], "stdout": "o", "stderr": "e"},
    {"script": "s", "env": {"A": 1}, "stdout": "o", "stderr": "e"},
])
def test_run_helper_refuses_a_malformed_request(bad):
    with pytest.raises(ValueError):
        warm_start.run_helper(bad)


@pytest.mark.parametrize("code, status", [
    (None, 0), (0, 0), (3, 3), (True, 1), (False, 0), (256, 0), (257, 1), (-1, 255), ("a message", 1),
])
def test_exit_status_is_what_a_fresh_process_reports(code, status):
    assert warm_start.exit_status(code) == status
    fresh = __import__("subprocess").run([sys.executable, "-c", f"import sys; sys.exit({code!r})"],
                                         capture_output=True)
    assert fresh.returncode == status
