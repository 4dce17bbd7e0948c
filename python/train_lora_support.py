"""The light half of loractl's trainer (train_lora.py): resolved.json validation, the event
writer, signal handling and checkpoint bookkeeping. Nothing here imports torch, so a bad
config is refused in a fraction of a second and tests can exercise these parts directly.
"""

import atexit
import errno
import hashlib
import json
import math
import os
import shutil
import signal
import stat
import sys
import threading
import zipfile
from datetime import datetime, timezone

EXIT_OK, EXIT_FAILED, EXIT_INVALID, EXIT_INTERRUPTED = 0, 1, 2, 75
MARKER = "loractl-complete.json"
CHECKPOINT_PREFIX = "checkpoint-"


class ConfigError(Exception):
    """Invalid resolved config, arguments or environment for them: exit 2."""


class TrainerError(Exception):
    """A failure with advice for the user: exit 1 with the hint in the error event."""

    def __init__(self, message, hint=""):
        super().__init__(message)
        self.hint = hint


class Interrupted(BaseException):
    """Raised by the signal handler before training begins (nothing to save yet).

    A BaseException so that library code's `except Exception` cannot swallow it."""


# ---------------------------------------------------------------- signals

class _Stop:
    """What the signal handler has seen. `immediate` is True until training begins."""

    signame = None
    immediate = True


STOP = _Stop()


def _on_signal(signum, _frame):
    name = signal.Signals(signum).name
    if STOP.signame is None:
        STOP.signame = name
        print(f"train_lora: {name} received, stopping", file=sys.stderr, flush=True)
    else:
        print(f"train_lora: {name} received again, already stopping", file=sys.stderr, flush=True)
    if STOP.immediate:
        STOP.immediate = False  # raise once; the unwinding must not be interrupted again
        raise Interrupted(name)


def install_signal_handlers():
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1):
        signal.signal(sig, _on_signal)


# ---------------------------------------------------------------- events

def now_rfc3339():
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _json_safe(value):
    """JSON has no NaN or Infinity (Go's decoder rejects them): write null instead."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if value is None or isinstance(value, (str, int, bool)):
        return value
    if hasattr(value, "item"):  # numpy / torch scalars
        return _json_safe(value.item())
    return str(value)


def _ends_torn(path):
    """True when the file at path is non-empty and does not end with a newline."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        size = os.fstat(fd).st_size
        return size > 0 and os.pread(fd, 1, size - 1) != b"\n"
    finally:
        os.close(fd)


def exit_now(code):
    """Ends the process with `code` without the interpreter's module teardown.

    Tearing down torch, transformers, peft and trl's modules takes about 1.3 s on a
    2-core machine (docs/benchmarks.md), every run, after the work is done and written.
    What a normal exit does that a run needs is done here first, in the same order:
    other non-daemon threads are joined, atexit handlers run (logging, the trackers'
    last uploads, multiprocessing's children), and stdio is flushed. Only the teardown
    itself is skipped: freeing objects the kernel reclaims anyway. An exception or
    SystemExit raised by the caller never gets here, so those exit as before."""
    code = 0 if code is None else code
    main = threading.main_thread()
    for t in threading.enumerate():
        if t is not main and not t.daemon:
            t.join()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed or broken pipe: nothing left to save
            pass
    os._exit(code if isinstance(code, int) else 1)


class Events:
    """Appends one JSON object per line to events.jsonl, unbuffered.

    Each line goes out in one os.write on an O_APPEND descriptor, so a reader never sees
    half a line from us and the controller may append its own events to the same file.
    Warnings raised before `start` are held back so that `start` is always the first event
    of an attempt that gets that far."""

    def __init__(self, path):
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o644)  # never through a planted link
        if _ends_torn(path):
            # A writer killed mid-line left half an event: end it, or this attempt's first
            # event would be glued to it and lost to every reader of the whole file.
            os.write(self.fd, b"\n")
        self.started = False
        self.pending = []
        # The data is tokenized in a thread while the model loads (train_lora.Background):
        # one writer at a time, and nothing after the end event (a tokenizer warning from a
        # run that already failed on its model).
        self.lock = threading.Lock()
        self.ended = False

    def emit(self, type_, **fields):
        event = {"type": type_, "time": now_rfc3339(), **fields}
        data = (json.dumps(_json_safe(event), ensure_ascii=False, allow_nan=False) + "\n").encode()
        with self.lock:
            if self.ended:
                return
            self.ended = type_ == "end"
            while data:
                data = data[os.write(self.fd, data):]

    def warn(self, code, message):
        print(f"train_lora: warning: {code}: {message}", file=sys.stderr, flush=True)
        if self.started:
            self.emit("warning", code=code, message=message)
        else:
            self.pending.append((code, message))

    def start(self, **fields):
        self.emit("start", **fields)
        self.started = True
        for code, message in self.pending:
            self.emit("warning", code=code, message=message)
        self.pending = []

    def flush_pending(self):
        for code, message in self.pending:
            self.emit("warning", code=code, message=message)
        self.pending = []


# ---------------------------------------------------------------- resolved.json

# resolved.json is checked against its JSON Schema, generated from the Go type that writes
# it (resolved_schema.py, `loractl schema --resolved`): one source for its keys, types,
# enums and ranges. What the schema cannot say (relations between keys, files that must
# exist, the eval metrics' meaning) is checked here after it.

# Keys a resolved.json written before they existed may lack: section -> key -> default
# (a callable of the section for one that follows other keys).
_OPTIONAL = {
    "train": {
        "batch_size_auto": False,
        "effective_batch_size": lambda t: t.get("batch_size", 1) * t.get("grad_accum", 1) if isinstance(
            t.get("batch_size"), int) and isinstance(t.get("grad_accum"), int) else 1,
        "attn_implementation": "auto",
        "effective_batch_size_set": False,
        "padding_free": False,
        "liger": False,
        "select": "last",
        "early_stopping_patience": 0,
        # Left out of resolved.json when empty, so configs that track nothing keep their run ids.
        "report_to": [],
    },
}


def _fill_optional_block(block, fields):
    for key, default in fields.items():
        if key not in block:
            # A fresh list each time: the default itself is never handed out.
            block[key] = default(block) if callable(default) else (list(default) if isinstance(default, list) else default)


def with_defaults(cfg):
    """Fill in the optional keys (_OPTIONAL, the eval section) of a config that did not go
    through validate_config; returns cfg."""
    for section, fields in _OPTIONAL.items():
        block = cfg.setdefault(section, {})
        if isinstance(block, dict):
            _fill_optional_block(block, fields)
    from task_metrics import validate_eval
    cfg["eval"] = validate_eval(cfg.get("eval"))
    return cfg


# The micro-batch the GPU pre-flight chose for train.batch_size auto (docs/performance.md).
MICRO_BATCH_ENV = "LORACTL_MICRO_BATCH"
def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


_TYPE_WORDS = {"integer": "an integer", "number": "a number", "string": "a string", "boolean": "a boolean",
               "array": "a list", "object": "an object"}
_BOUNDS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")


def _schema_validator():
    import jsonschema
    from resolved_schema import SCHEMA
    base = jsonschema.Draft202012Validator
    # JSON Schema counts 1.0 as an integer; a batch size of 1.0 would reach the trainer's
    # libraries as a float, so an integer here is an int, and never a bool.
    checker = base.TYPE_CHECKER.redefine("integer", lambda _checker, v: _is_int(v))
    return jsonschema.validators.extend(base, type_checker=checker)(SCHEMA), SCHEMA


def _dotted(path):
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def _words(values):
    words = [v if isinstance(v, str) else json.dumps(v) for v in values]
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]


def _range_words(s):
    lo = ("[", s["minimum"]) if "minimum" in s else ("(", s["exclusiveMinimum"]) if "exclusiveMinimum" in s else None
    hi = (s["maximum"], "]") if "maximum" in s else (s["exclusiveMaximum"], ")") if "exclusiveMaximum" in s else None
    if lo and hi:
        return f"in {lo[0]}{lo[1]}, {hi[0]}{hi[1]}"
    if lo:
        return (">= " if lo[0] == "[" else "> ") + str(lo[1])
    return ("<= " if hi[1] == "]" else "< ") + str(hi[0])


def _want(err):
    """What the failing (sub)schema asks for, in the words of the error messages."""
    s, kw = err.schema, err.validator
    if kw == "type":
        types = s["type"] if isinstance(s["type"], list) else [s["type"]]
        return " or ".join(_TYPE_WORDS.get(t, t) for t in types)
    if kw in _BOUNDS:
        return _range_words(s)
    if "description" in s:
        return s["description"]
    if kw == "const":
        return _words([s["const"]])
    if kw == "enum":
        return _words(s["enum"])
    if kw == "uniqueItems":
        return "a list without repeats"
    if kw == "minItems":
        return "a non-empty list"
    if kw == "minLength":
        return "a non-empty string"
    return f"valid ({err.message})"


def _drop_unknown(doc, schema, path, warnings):
    """Keys the schema does not know are dropped with a warning rather than refused: a
    resolved.json from a newer controller still trains with this trainer."""
    if not isinstance(doc, dict) or "properties" not in schema:
        if isinstance(doc, list) and isinstance(schema.get("items"), dict):
            for i, item in enumerate(doc):
                _drop_unknown(item, schema["items"], f"{path}[{i}]", warnings)
        return
    props = schema["properties"]
    for key in list(doc):
        where = f"{path}.{key}" if path else key
        if key not in props:
            warnings.append(f"{where}: unknown key, ignored")
            del doc[key]
        elif isinstance(props[key], dict):
            _drop_unknown(doc[key], props[key], where, warnings)


def _schema_errors(validator, doc):
    errors = []
    for err in sorted(validator.iter_errors(doc), key=lambda e: [str(p) for p in e.absolute_path]):
        where = _dotted(err.absolute_path)
        if err.validator == "required":
            errors.extend(f"{where + '.' if where else ''}{k}: missing"
                          for k in err.validator_value if k not in err.instance)
        else:
            errors.append(f"{where or '(top level)'}: must be {_want(err)}, got {json.dumps(err.instance)}")
    return errors


def validate_config(raw):
    """Check a parsed resolved.json against its schema, then the relations between its keys.
    Returns (config, warnings); raises ConfigError listing every problem, each named by its
    key (`train.learning_rate: must be > 0, got -1`)."""
    if not isinstance(raw, dict):
        raise ConfigError("the top level must be a JSON object")
    warnings = []
    validator, schema = _schema_validator()
    _drop_unknown(raw, schema, "", warnings)
    warnings.sort()
    train = raw.get("train")
    # A default filled in below says nothing about the processes: only a value the
    # controller wrote is checked against them.
    given_effective = isinstance(train, dict) and "effective_batch_size" in train
    for section, fields in _OPTIONAL.items():
        if isinstance(raw.get(section), dict):
            _fill_optional_block(raw[section], fields)
    from task_metrics import EVAL_DEFAULTS, validate_eval  # task_metrics imports this module
    # The eval section and its keys may be left out (an older controller): defaults.
    if raw.get("eval") is None:
        raw["eval"] = {}
    if isinstance(raw["eval"], dict):
        _fill_optional_block(raw["eval"], EVAL_DEFAULTS)
    errors = _schema_errors(validator, raw)
    if not errors:
        errors.extend(_cross_checks(raw, check_effective=given_effective))
    if not errors:
        try:
            raw["eval"] = validate_eval(raw["eval"])
        except ConfigError as e:
            errors.append(str(e))
    if errors:
        raise ConfigError("; ".join(errors))
    return raw, warnings


def _cross_checks(cfg, check_effective=True):
    errors = []
    data = cfg["data"]
    if data["eval"] and data["eval_split"] > 0:
        errors.append("data.eval and data.eval_split: set only one (an eval file, or a split of train)")
    t = cfg["train"]
    # effective = micro-batch × grad_accum × processes; the process count is known here
    # unless distributed.nproc_per_node is auto (0), when only torchrun's world size says.
    d = cfg.get("distributed") or {}
    procs = 1 if not d else (d.get("nodes", 1) * d.get("nproc_per_node", 0))
    if check_effective and procs and t["batch_size"] * t["grad_accum"] * procs != t["effective_batch_size"]:
        errors.append(f"train.effective_batch_size: {t['effective_batch_size']} is not train.batch_size "
                      f"{t['batch_size']} × train.grad_accum {t['grad_accum']} × {procs} processes")
    for key in ("train", "eval"):
        path = data[key]
        if path and not os.path.isfile(path):
            errors.append(f"data.{key}: {path}: no such file")
    return errors


def apply_micro_batch(cfg, env):
    """With train.batch_size auto, the pre-flight passes the micro-batch it chose in
    LORACTL_MICRO_BATCH; grad_accum follows so that the effective batch (and with it the
    optimisation) is the config's. Returns the micro-batch used, or None when the config's
    stands. Refuses a value that is not a divisor of the effective batch."""
    t = cfg["train"]
    value = env.get(MICRO_BATCH_ENV, "")
    if not value or not t["batch_size_auto"]:
        return None
    try:
        micro = int(value)
    except ValueError:
        micro = 0
    effective = t["effective_batch_size"]
    if micro < 1 or effective % micro:
        raise ConfigError(f"{MICRO_BATCH_ENV}={value!r}: want a divisor of train.effective_batch_size {effective}")
    t["batch_size"], t["grad_accum"] = micro, effective // micro
    return micro


def resolve_kernels(t, cuda, installed):
    """The trainer's attention, padding-free and Liger choices: `auto` turns on what is
    installed (installed(name) -> bool) and supported on the device. Returns
    (attn_implementation or None for the model's default, padding_free, liger)."""
    # A config that skipped validate_config (in-process callers) has the old behaviour.
    attn = t.get("attn_implementation", "auto")
    if attn == "auto":
        attn = "flash_attention_2" if cuda and installed("flash_attn") else None
    elif attn == "flash_attention_2" and not (cuda and installed("flash_attn")):
        raise ConfigError("train.attn_implementation flash_attention_2 needs a CUDA GPU and the flash-attn package; "
                          "use auto or sdpa")
    padding_free = t.get("padding_free", False)
    if padding_free == "auto":
        # Padding-free batches need attention that reads position_ids; on the CPU the
        # padded path stays (it is what the tests pin down).
        padding_free = cuda and attn != "eager" and not t.get("packing", False)
    liger = t.get("liger", False)
    if liger == "auto":
        liger = cuda and installed("liger_kernel")
    elif liger and not (cuda and installed("liger_kernel")):
        raise ConfigError("train.liger true needs a CUDA GPU and the liger-kernel package "
                          "(python/requirements-gpu.txt); use auto or false")
    return attn, bool(padding_free), bool(liger)


def load_config(path):
    try:
        with open(path, encoding="utf-8") as f:
            raw = json.load(f)
    except OSError as e:
        raise ConfigError(f"cannot read {path}: {e.strerror}")
    except ValueError as e:
        raise ConfigError(f"{path}: not valid JSON: {e}")
    try:
        return validate_config(raw)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}")


def file_sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


# ---------------------------------------------------------------- checkpoints

MARKER_VERSION = 2
MAX_MARKER_BYTES = 1 << 20
# Files every checkpoint must have: the adapter, the optimizer and LR schedule (the Trainer
# skips a missing optimizer.pt silently and restarts them) and the state that holds the step.
REQUIRED_CHECKPOINT_FILES = (
    "adapter_config.json", "adapter_model.safetensors", "optimizer.pt", "scheduler.pt", "trainer_state.json",
)
_HEX = frozenset("0123456789abcdef")
_MAX_INT64 = (1 << 63) - 1


class CheckpointIncomplete(Exception):
    """A checkpoint whose marker is missing, unreadable, or does not match its files."""


def _read_regular(path, limit):
    """Read a regular file (never through a symlink, never a FIFO) of at most limit bytes."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise OSError(f"{os.path.basename(path)} is not a regular file")
        if st.st_size > limit:
            raise OSError(f"{st.st_size} bytes, over the {limit}-byte limit")
        data = f.read(limit + 1)
    if len(data) > limit:
        raise OSError(f"over the {limit}-byte limit")
    return data


def _non_negative_int(value):
    return _is_int(value) and 0 <= value <= _MAX_INT64


def _valid_marker_path(p):
    if not isinstance(p, str) or p in ("", MARKER) or "\\" in p or "\0" in p or "\ufffd" in p or p.startswith("/"):
        return False
    try:
        p.encode("utf-8")  # a lone surrogate ("\ud800") names no file
    except UnicodeEncodeError:
        return False
    return all(part not in ("", ".", "..") for part in p.split("/"))


def parse_marker(data):
    """Validate a marker's bytes (the rules run/checkpoint.go applies): a dict, or raise."""
    try:
        marker = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise CheckpointIncomplete(f"{MARKER}: not a JSON object") from None
    if not isinstance(marker, dict):
        raise CheckpointIncomplete(f"{MARKER}: not a JSON object")
    if "step" not in marker:
        raise CheckpointIncomplete(f'{MARKER}: no "step"')
    if not _non_negative_int(marker["step"]):
        raise CheckpointIncomplete(f'{MARKER}: "step" {json.dumps(marker["step"])} is not a non-negative integer')
    if "files" not in marker:
        return marker
    files = marker["files"]
    if not isinstance(files, list) or not all(isinstance(f, dict) for f in files):
        raise CheckpointIncomplete(f'{MARKER}: "files" is not a list of objects')
    if not files:
        raise CheckpointIncomplete(f'{MARKER}: "files" is empty')
    seen = set()
    for i, f in enumerate(files):
        p = f.get("path")
        if not _valid_marker_path(p):
            raise CheckpointIncomplete(f"{MARKER}: files[{i}]: path {json.dumps(p)} is not a plain relative path")
        if p in seen:
            raise CheckpointIncomplete(f"{MARKER}: file {p!r} listed twice")
        seen.add(p)
        if not _non_negative_int(f.get("size")):
            raise CheckpointIncomplete(f"{MARKER}: file {p!r}: size is not a non-negative integer")
        h = f.get("sha256")
        if not isinstance(h, str) or len(h) != 64 or not set(h) <= _HEX:
            raise CheckpointIncomplete(f"{MARKER}: file {p!r}: sha256 is not 64 lower-case hex digits")
    return marker


def _file_sha256_nofollow(path):
    h = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _check_listed(ckpt_dir, entry, deep):
    p = entry["path"]
    try:
        st = os.lstat(os.path.join(ckpt_dir, *p.split("/")))
    except FileNotFoundError:
        raise CheckpointIncomplete(f"{p} is missing") from None
    if not stat.S_ISREG(st.st_mode):
        raise CheckpointIncomplete(f"{p} is not a regular file")
    if st.st_size != entry["size"]:
        raise CheckpointIncomplete(f"{p} has {st.st_size} bytes, the marker says {entry['size']}")
    if deep:
        got = _file_sha256_nofollow(os.path.join(ckpt_dir, *p.split("/")))
        if got != entry["sha256"]:
            raise CheckpointIncomplete(
                f"{p}: sha256 {got[:12]}, the marker says {entry['sha256'][:12]} (changed after it was saved)")


def _loadable(path, deep):
    """A required file of a legacy checkpoint is there and loads (without torch: JSON parses,
    a torch.save zip passes its CRC checks, a safetensors header matches the file size)."""
    name = os.path.basename(path)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        raise CheckpointIncomplete(f"legacy marker (no file list) and {name} is missing") from None
    if not stat.S_ISREG(st.st_mode) or st.st_size == 0:
        raise CheckpointIncomplete(f"legacy marker (no file list) and {name} is not a non-empty regular file")
    try:
        if name.endswith(".json"):
            json.loads(_read_regular(path, 64 << 20).decode("utf-8"))
        elif name.endswith(".pt"):
            with zipfile.ZipFile(path) as z:
                if not z.infolist():
                    raise ValueError("empty archive")
                if deep and z.testzip() is not None:
                    raise ValueError("CRC mismatch")
        elif name.endswith(".safetensors"):
            _safetensors_intact(path, st.st_size)
    except (OSError, ValueError, zipfile.BadZipFile, UnicodeDecodeError) as e:
        raise CheckpointIncomplete(f"legacy marker (no file list) and {name} does not load: {e}") from None


def _safetensors_intact(path, size):
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) != 8:
            raise ValueError("no header")
        n = int.from_bytes(head, "little")
        if n == 0 or n > 100 << 20 or n + 8 > size:
            raise ValueError(f"header length {n} does not fit a {size}-byte file")
        header = json.loads(f.read(n).decode("utf-8"))
    end = 0
    for name, t in header.items():
        if name == "__metadata__":
            continue
        offsets = t.get("data_offsets") if isinstance(t, dict) else None
        if not isinstance(offsets, list) or len(offsets) != 2:
            raise ValueError(f"tensor {name!r} has no data_offsets")
        end = max(end, offsets[1])
    if 8 + n + end != size:
        raise ValueError(f"header promises {end} data bytes, the file has {size - 8 - n}")


def verify_checkpoint(ckpt_dir, deep=True):
    """The checkpoint's marker when the checkpoint is complete, else CheckpointIncomplete
    saying why. A version-2 marker lists every file with size and sha256 (hashes checked when
    deep); a legacy marker counts only when the required files are there and load. The marker
    has `legacy: True` added in that case. Same rules as run.VerifyCheckpoint in Go."""
    try:
        data = _read_regular(os.path.join(ckpt_dir, MARKER), MAX_MARKER_BYTES)
    except OSError as e:
        raise CheckpointIncomplete(f"{MARKER}: {e.strerror or e}") from None
    marker = parse_marker(data)
    if "files" not in marker:
        for name in REQUIRED_CHECKPOINT_FILES:
            _loadable(os.path.join(ckpt_dir, name), deep)
        marker["legacy"] = True
        return marker
    for entry in marker["files"]:
        _check_listed(ckpt_dir, entry, deep)
    listed = {f["path"] for f in marker["files"]}
    for name in REQUIRED_CHECKPOINT_FILES:
        if name not in listed:
            raise CheckpointIncomplete(f"{name} is not among the files the marker lists")
    return marker


def read_marker(ckpt_dir, deep=False):
    """The completion marker of a checkpoint, or None when the checkpoint is incomplete
    (sizes checked; hashes too when deep)."""
    try:
        return verify_checkpoint(ckpt_dir, deep)
    except CheckpointIncomplete:
        return None


def list_checkpoints(ckpt_root):
    """(step, path, marker or None) for every checkpoint-<step> dir, by step."""
    out = []
    try:
        names = os.listdir(ckpt_root)
    except FileNotFoundError:
        return out
    for name in names:
        step = name[len(CHECKPOINT_PREFIX):]
        path = os.path.join(ckpt_root, name)
        if name.startswith(CHECKPOINT_PREFIX) and step.isdigit() and os.path.isdir(path):
            out.append((int(step), path, read_marker(path)))
    return sorted(out)


def write_json_atomic(path, obj):
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(_json_safe(obj), f, indent=2, allow_nan=False)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def remove_checkpoint(path):
    """Un-mark first: a crash half-way through rmtree leaves an incomplete dir, never a
    complete-looking one with files missing."""
    try:
        os.remove(os.path.join(path, MARKER))
    except FileNotFoundError:
        pass
    shutil.rmtree(path, ignore_errors=True)


def fsync_tree(path):
    """Flush a directory's files and entries to disk, so that the marker written after them
    can never survive a crash or power loss that the checkpoint's own files did not."""
    for root, _dirs, files in os.walk(path):
        for name in files:
            fd = os.open(os.path.join(root, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fd = os.open(root, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def checkpoint_files(ckpt_dir):
    """Every file under ckpt_dir but the marker (and its temp files), with size and sha256,
    relative slash-separated paths in a stable order."""
    out = []
    for root, dirs, files in os.walk(ckpt_dir):
        dirs.sort()
        for name in sorted(files):
            if name == MARKER or name.startswith(MARKER + ".tmp-"):
                continue
            full = os.path.join(root, name)
            rel = os.path.relpath(full, ckpt_dir).replace(os.sep, "/")
            out.append({"path": rel, "size": os.lstat(full).st_size, "sha256": _file_sha256_nofollow(full)})
    return out


def mark_complete(ckpt_dir, step, eval_loss_before, resolved_sha256):
    """Write the marker that makes a checkpoint count: last, and atomically, listing every
    file with its size and sha256 (hashing runs at ~1 GB/s: docs/reliability.md)."""
    fsync_tree(ckpt_dir)
    write_json_atomic(os.path.join(ckpt_dir, MARKER), {
        "version": MARKER_VERSION,
        "step": step,
        "time": now_rfc3339(),
        "eval_loss_before": eval_loss_before,
        "resolved_sha256": resolved_sha256,
        "files": checkpoint_files(ckpt_dir),
    })


def prune_checkpoints(ckpt_root, newest_step, keep, protect=None):
    """Delete incomplete checkpoints older than newest_step (debris of a killed attempt) and,
    when keep > 0, the oldest complete ones beyond keep. The Trainer's own rotation is off:
    it runs before the marker exists and could leave fewer complete checkpoints than asked.
    The checkpoint of step `protect` (train.select best's best so far) is never deleted."""
    entries = list_checkpoints(ckpt_root)
    for step, path, marker in entries:
        if marker is None and step < newest_step:
            remove_checkpoint(path)
    complete = [(step, path) for step, path, marker in entries if marker is not None]
    if keep > 0:
        for step, path in complete[:-keep]:
            if step not in (newest_step, protect):
                remove_checkpoint(path)


def choose_resume(run_dir, resume, warn=None):
    """Pick the checkpoint to resume from: (path, marker) or (None, None) for a fresh start.

    "auto" takes the newest checkpoint that verifies deeply; every newer one it passes over
    is reported through warn(code, message), naming the checkpoint and the reason."""
    warn = warn or (lambda code, message: None)
    ckpt_root = os.path.join(run_dir, "checkpoints")
    entries = list_checkpoints(ckpt_root)
    complete = [(s, p, m) for s, p, m in entries if m is not None]
    if resume is None:
        if complete:
            raise ConfigError(
                f"{ckpt_root} already holds complete checkpoints (newest {os.path.basename(complete[-1][1])}): "
                "pass --resume auto to continue from it, or remove that directory to start over")
        return None, None
    if resume == "auto":
        for _step, path, _marker in reversed(entries):
            try:
                marker = verify_checkpoint(path, deep=True)
            except CheckpointIncomplete as e:
                warn("checkpoint_skipped", f"{os.path.basename(path)} is not used: {e}")
                continue
            if marker.get("legacy"):
                warn("legacy_checkpoint", f"{os.path.basename(path)} has a marker without a file list "
                     "(saved by an older loractl); its required files are there and load")
            return path, marker
        return None, None
    path = os.path.abspath(resume)
    if not os.path.isdir(path):
        raise ConfigError(f"--resume {resume}: no such checkpoint directory")
    try:
        marker = verify_checkpoint(path, deep=True)
    except CheckpointIncomplete as e:
        raise ConfigError(f"--resume {resume}: checkpoint is incomplete: {e}") from None
    if marker.get("legacy"):
        warn("legacy_checkpoint", f"{os.path.basename(path)} has a marker without a file list "
             "(saved by an older loractl); its required files are there and load")
    return path, marker


# ---------------------------------------------------------------- disk full

_DISK_FULL_TEXT = ("unexpected pos", "PytorchStreamWriter failed", "No space left", "file write failed")
_LOW_SPACE = 64 << 20


def _human_bytes(n):
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def disk_full_message(exc, path):
    """A plain message when exc (or what caused it) is a full disk under path, else "".

    torch.save reports ENOSPC as "unexpected pos 40896 vs 40784"; an OSError says
    ENOSPC. A torch write error counts as a full disk only when little space is left."""
    chain, seen = [], set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        chain.append(exc)
        exc = exc.__cause__ or exc.__context__
    enospc = any(isinstance(e, OSError) and e.errno == errno.ENOSPC for e in chain)
    torch_write = any(t in str(e) for e in chain for t in _DISK_FULL_TEXT)
    if not (enospc or torch_write):
        return ""
    try:
        free = shutil.disk_usage(path).free
    except OSError:
        free = None
    if not enospc and (free is None or free > _LOW_SPACE):
        return ""
    left = f"{_human_bytes(free)} free" if free is not None else "free space unknown"
    return (f"the disk holding {path} is full ({left}): free some space (older runs, checkpoints) or lower "
            "train.save_total_limit, then continue with --resume from the last complete checkpoint")


# ---------------------------------------------------------------- data

def message_weight(value):
    """A message's `weight` as the Go check reads it: the JSON number 0 or 1 (0.0, 1e0 too);
    None for anything else."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value in (0, 1):
        return int(value)
    return None


def _utf8_ok(text):
    """False for a str holding a lone surrogate (JSON's "\\ud800" escape), which has no
    UTF-8 encoding: the tokenizer would fail on it far from the line that caused it."""
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


# The message keys handed to the chat template: those the data check accepts, less loractl's
# own `weight`. The tool-calling and reasoning keys are what templates read to render a tool
# call, a tool result or a reasoning block; without them an assistant turn that only calls a
# tool would be trained as an empty turn.
TEMPLATE_KEYS = ("role", "content", "name", "tool_calls", "tool_call_id", "reasoning_content", "thinking")


def _bad_string_path(value, path):
    """The JSON path of the first string (key or value) in value that holds a lone surrogate,
    or None."""
    if isinstance(value, str):
        return None if _utf8_ok(value) else path
    if isinstance(value, dict):
        for k, v in value.items():
            if not _utf8_ok(k):
                return path
            found = _bad_string_path(v, f"{path}.{k}")
            if found:
                return found
    if isinstance(value, list):
        for i, v in enumerate(value):
            found = _bad_string_path(v, f"{path}[{i}]")
            if found:
                return found
    return None


# What the data check (and token_stats) count as blank: ASCII whitespace only. str.strip()
# would also take NBSP, U+1C..U+1F, U+2000.. for blank, and skip a line the checker refuses.
ASCII_SPACE = b" \t\r\n\x0b\x0c"


def read_chat_jsonl(path):
    """Rows as {"messages": [...], "tools": [...] or None, "weights": [0|1 per message],
    "where": "FILE:LINE"}, naming file:line on bad input (ConfigError). The rules are
    iter_chat_rows'; a file with no rows is an error."""
    rows = []
    for _lineno, row, problem in iter_chat_rows(path):
        if problem:
            raise ConfigError(problem)
        rows.append(row)
    if not rows:
        raise ConfigError(f"{path}: no examples")
    return rows


def iter_chat_rows(path, max_line_bytes=None):
    """Yield (line number, row, problem) for every line of a chat JSONL file that is not
    blank: the row as read_chat_jsonl returns them, or None and what is wrong with the line
    ("FILE:LINE: ..."). The trainer refuses a file with a problem; the token counter
    (token_stats.py) skips such lines, which the Go check reports. One reader for both, so
    that what is counted is what is trained.

    Lines end at a newline byte only and are numbered as `loractl data check` numbers them: a UTF-8
    byte order mark at the start of the file is skipped, a CR before the newline (CRLF) or
    anywhere else between JSON tokens is whitespace, not a line end, and a line is blank (skipped)
    when it holds ASCII whitespace only (a line of an NBSP is not JSON). Messages keep the keys
    chat templates read (TEMPLATE_KEYS: role, content and the tool-calling and reasoning keys,
    as written) and nothing else; `weights` holds each message's `weight` (default 1; only an
    assistant turn's matters: weight 0 makes it context, not a target). `tools`, the row's
    optional top-level list of function schemas for apply_chat_template(tools=...), must be a
    list of objects. An example whose assistant turns all have weight 0 is refused, as the
    data check does. The rows are tokenized from these dicts as they are (never through an
    Arrow table, which would merge the shapes of tool calls across rows). With
    max_line_bytes, a longer line is a problem and is skipped without being read whole."""
    limit = -1 if max_line_bytes is None else max_line_bytes + 2
    with open(path, "rb") as f:  # binary lines end at b"\n" only
        lineno = 0
        while True:
            raw = f.readline(limit)
            if not raw:
                return
            lineno += 1
            where = f"{path}:{lineno}"
            if max_line_bytes is not None and not raw.endswith(b"\n") and len(raw) == limit:
                while True:  # too long: skip the rest of the line without keeping it
                    rest = f.readline(1 << 20)
                    if not rest or rest.endswith(b"\n"):
                        break
                yield lineno, None, f"{where}: longer than {max_line_bytes} bytes"
                continue
            if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            if not raw.strip(ASCII_SPACE):  # not str.strip(): an NBSP-only line is not blank
                continue
            try:
                yield lineno, _chat_row(raw, where), None
            except ConfigError as e:
                yield lineno, None, str(e)


def _chat_row(raw, where):
    """One non-blank line as a row; ConfigError naming where and what."""
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{where}: not valid UTF-8 (byte {e.start})")
    try:
        obj = json.loads(line)
    except ValueError as e:
        raise ConfigError(f"{where}: not valid JSON: {e}")
    msgs = obj.get("messages") if isinstance(obj, dict) else None
    if not isinstance(msgs, list) or not msgs:
        raise ConfigError(f'{where}: want an object with a non-empty "messages" list')
    tools = obj.get("tools")
    if "tools" in obj and not (isinstance(tools, list) and all(isinstance(t, dict) for t in tools)):
        raise ConfigError(f"{where}: tools: must be a list of objects (function schemas), "
                          f"got {json.dumps(tools)[:80]}")
    escapes = "\\u" in line  # only an escape can make a lone surrogate
    clean, weights = [], []
    for i, m in enumerate(msgs):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
            raise ConfigError(f"{where}: messages[{i}] needs string role and content")
        kept = {k: m[k] for k in TEMPLATE_KEYS if k in m}
        if escapes:
            for key, value in kept.items():
                bad = _bad_string_path(value, f"messages[{i}].{key}")
                if bad:
                    raise ConfigError(f"{where}: {bad}: not valid UTF-8 "
                                      "(a lone surrogate escape such as \\ud800)")
        weight = message_weight(m.get("weight", 1))
        if weight is None:
            raise ConfigError(f"{where}: messages[{i}].weight: must be the number 0 or 1, "
                              f"got {json.dumps(m['weight'])}")
        clean.append(kept)
        weights.append(weight)
    if escapes and tools:
        bad = _bad_string_path(tools, "tools")
        if bad:
            raise ConfigError(f"{where}: {bad}: not valid UTF-8 (a lone surrogate escape such as \\ud800)")
    targets = [w for m, w in zip(clean, weights) if m["role"] == "assistant"]
    if targets and not any(targets):
        raise ConfigError(f"{where}: every assistant message has weight 0: "
                          "the example has nothing to learn from")
    return {"messages": clean, "tools": tools, "weights": weights, "where": where}


def weight0_turns(rows):
    """How many assistant turns of these rows have weight 0."""
    return sum(1 for r in rows for m, w in zip(r["messages"], r["weights"]) if m["role"] == "assistant" and w == 0)


class SpanMismatch(ValueError):
    """The chat template's {% generation %} spans do not pair up with the assistant turns."""


def zero_weight0_spans(mask, turn_weights):
    """The mask with the spans of weight-0 assistant turns set to 0. `mask` is
    apply_chat_template(..., return_assistant_tokens_mask=True)'s: one run of 1s per
    {% generation %} block, in the order the template renders them, which is the order of
    the assistant turns (`turn_weights`, one per assistant turn). When the runs and the turns
    do not pair up (several blocks per turn, none for some, blocks that touch) a weight
    cannot be placed: SpanMismatch. The trainer and token_stats.py both use this one."""
    if all(turn_weights):
        return mask
    runs, start = [], None
    for i, bit in enumerate(list(mask) + [0]):
        if bit and start is None:
            start = i
        elif not bit and start is not None:
            runs.append((start, i))
            start = None
    if len(runs) != len(turn_weights):
        raise SpanMismatch(f"the chat template marks {len(runs)} {{% generation %}} span(s) for "
                           f"{len(turn_weights)} assistant turn(s), so the weight-0 turns cannot be told apart")
    out = list(mask)
    for (a, b), w in zip(runs, turn_weights):
        if w == 0:
            out[a:b] = [0] * (b - a)
    return out


def unweight_mask(mask, messages, weights, where):
    """zero_weight0_spans for one example of the trainer's data, refusing it, named by
    FILE:LINE, when its weights cannot be placed: better than training the wrong tokens."""
    turns = [w for m, w in zip(messages, weights) if m["role"] == "assistant"]
    try:
        return zero_weight0_spans(mask, turns)
    except SpanMismatch as e:
        raise TrainerError(
            f"{where}: {e}",
            hint="remove the weight keys from this example, or use a chat template with one {% generation %} "
                 "block around each assistant turn")
