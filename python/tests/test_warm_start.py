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
