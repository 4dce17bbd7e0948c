"""The light half of loractl's trainer (train_lora.py): resolved.json validation, the event
writer, signal handling and checkpoint bookkeeping. Nothing here imports torch, so a bad
config is refused in a fraction of a second and tests can exercise these parts directly.
"""

import hashlib
import json
import math
import os
import shutil
import signal
import sys
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


class Events:
    """Appends one JSON object per line to events.jsonl, unbuffered.

    Each line goes out in one os.write on an O_APPEND descriptor, so a reader never sees
    half a line from us and the controller may append its own events to the same file.
    Warnings raised before `start` are held back so that `start` is always the first event
    of an attempt that gets that far."""

    def __init__(self, path):
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self.started = False
        self.pending = []

    def emit(self, type_, **fields):
        event = {"type": type_, "time": now_rfc3339(), **fields}
        data = (json.dumps(_json_safe(event), ensure_ascii=False, allow_nan=False) + "\n").encode()
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

_JSON_TYPE = {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list", dict: "an object"}

# section -> key -> (kind, check or None, what the check requires)
# Experiment trackers train.report_to may name (config/resolve.go's Trackers).
TRACKERS = ("tensorboard", "mlflow", "wandb")

_SCHEMA = {
    "model": {
        "name_or_path": (str, lambda v: v.strip() != "", "a model directory or hub id"),
        "revision": (str, None, ""),
        "trust_remote_code": (bool, None, ""),
    },
    "data": {
        "train": (str, lambda v: v != "", "a file path"),
        "eval": (str, None, ""),
        "eval_split": (float, lambda v: 0 <= v < 1, "0 (none) or a fraction in (0, 1)"),
    },
    "lora": {
        "r": (int, lambda v: v >= 1, ">= 1"),
        "alpha": (float, lambda v: v > 0, "> 0"),
        "dropout": (float, lambda v: 0 <= v < 1, "in [0, 1)"),
        "target_modules": ((list, str), None, ""),
        "bias": (str, lambda v: v in ("none", "all", "lora_only"), "none, all or lora_only"),
        "use_rslora": (bool, None, ""),
        "use_dora": (bool, None, ""),
    },
    "quantization": {
        "mode": (str, lambda v: v in ("none", "4bit", "8bit"), "none, 4bit or 8bit"),
        "quant_type": (str, lambda v: v in ("nf4", "fp4"), "nf4 or fp4"),
        "double_quant": (bool, None, ""),
    },
    "train": {
        "epochs": (float, lambda v: v > 0, "> 0"),
        "max_steps": (int, None, ""),
        "learning_rate": (float, lambda v: v > 0, "> 0"),
        "batch_size": (int, lambda v: v >= 1, ">= 1"),
        "eval_batch_size": (int, lambda v: v >= 1, ">= 1"),
        "grad_accum": (int, lambda v: v >= 1, ">= 1"),
        "max_length": (int, lambda v: v >= 1, ">= 1"),
        "warmup": (float, lambda v: v >= 0, ">= 0 (< 1 is a ratio of the steps, >= 1 a step count)"),
        "scheduler": (str, lambda v: v != "", "a scheduler name"),
        "seed": (int, lambda v: 0 <= v < 2**32, "in [0, 2^32)"),
        "gradient_checkpointing": (bool, None, ""),
        "packing": (bool, None, ""),
        "assistant_only_loss": ((bool, str), lambda v: v in (True, False, "auto"), '"auto", true or false'),
        "logging_steps": (int, lambda v: v >= 1, ">= 1"),
        "eval_steps": (int, lambda v: v >= 0, ">= 0 (0: every epoch)"),
        "save_steps": (int, lambda v: v >= 0, ">= 0 (0: every epoch)"),
        "save_total_limit": (int, lambda v: v >= 0, ">= 0 (0: keep all)"),
        "precision": (str, lambda v: v in ("auto", "bf16", "fp16", "fp32"), "auto, bf16, fp16 or fp32"),
        "weight_decay": (float, lambda v: v >= 0, ">= 0"),
        "max_grad_norm": (float, lambda v: v >= 0, ">= 0"),
        "optim": (str, lambda v: v != "", "an optimizer name"),
        "loss_type": (str, lambda v: v in ("nll", "dft", "chunked_nll"), "nll or dft"),
        "report_to": (list, lambda v: all(x in TRACKERS for x in v) and len(set(v)) == len(v),
                      "a list of distinct names among " + ", ".join(TRACKERS)),
    },
    # Absent for a single-process run (docs/distributed.md).
    "distributed": {
        "nproc_per_node": (int, lambda v: v >= 0, ">= 0 (0: auto)"),
        "nodes": (int, lambda v: v >= 1, ">= 1"),
        "strategy": (str, lambda v: v in ("ddp", "fsdp"), "ddp or fsdp"),
        "port": (int, lambda v: 1024 <= v <= 65535, "a TCP port from 1024 to 65535"),
    },
}
# Keys resolved.json leaves out when they hold their default (so run ids stay stable).
_OPTIONAL = {("train", "report_to")}
# Sections resolved.json leaves out entirely when unused.
_OPTIONAL_SECTIONS = {"distributed"}


def _is_kind(value, kind):
    kinds = kind if isinstance(kind, tuple) else (kind,)
    for k in kinds:
        if k is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return True
        if k is int and isinstance(value, int) and not isinstance(value, bool):
            return True
        if k not in (int, float) and isinstance(value, k):
            return True
    return False


def validate_config(raw):
    """Check a parsed resolved.json. Returns (config, warnings); raises ConfigError listing
    every problem, each named by its key (`train.learning_rate: must be > 0, got -1`)."""
    errors, warnings = [], []
    if not isinstance(raw, dict):
        raise ConfigError("the top level must be a JSON object")
    if raw.get("version") != 1:
        errors.append(f"version: must be 1, got {raw.get('version')!r}")
    if not isinstance(raw.get("name", ""), str):
        errors.append("name: must be a string")
    for key in sorted(set(raw) - set(_SCHEMA) - {"version", "name"}):
        warnings.append(f"{key}: unknown key, ignored")
    for section, fields in _SCHEMA.items():
        block = raw.get(section)
        if block is None and section in _OPTIONAL_SECTIONS:
            continue
        if not isinstance(block, dict):
            errors.append(f"{section}: missing or not an object")
            continue
        for key in sorted(set(block) - set(fields)):
            warnings.append(f"{section}.{key}: unknown key, ignored")
        for key, (kind, check, want) in fields.items():
            where = f"{section}.{key}"
            if key not in block:
                if (section, key) not in _OPTIONAL:
                    errors.append(f"{where}: missing")
                continue
            value = block[key]
            if not _is_kind(value, kind):
                names = " or ".join(_JSON_TYPE[k] for k in (kind if isinstance(kind, tuple) else (kind,)))
                errors.append(f"{where}: must be {names}, got {json.dumps(value)}")
            elif check is not None and not check(value):
                errors.append(f"{where}: must be {want}, got {json.dumps(value)}")
    if not errors:
        errors.extend(_cross_checks(raw))
    if errors:
        raise ConfigError("; ".join(errors))
    return raw, warnings


def _cross_checks(cfg):
    errors = []
    tm = cfg["lora"]["target_modules"]
    if isinstance(tm, str) and tm != "all-linear":
        errors.append(f'lora.target_modules: must be a list of module names or "all-linear", got {json.dumps(tm)}')
    if isinstance(tm, list) and (not tm or not all(isinstance(m, str) and m for m in tm)):
        errors.append("lora.target_modules: must be a non-empty list of module names")
    data = cfg["data"]
    if data["eval"] and data["eval_split"] > 0:
        errors.append("data.eval and data.eval_split: set only one (an eval file, or a split of train)")
    for key in ("train", "eval"):
        path = data[key]
        if path and not os.path.isfile(path):
            errors.append(f"data.{key}: {path}: no such file")
    return errors


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

def read_marker(ckpt_dir):
    """The completion marker of a checkpoint, or None when the checkpoint is incomplete."""
    try:
        with open(os.path.join(ckpt_dir, MARKER), encoding="utf-8") as f:
            marker = json.load(f)
    except (OSError, ValueError):
        return None
    if not isinstance(marker, dict) or not _is_kind(marker.get("step"), int):
        return None
    return marker


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


def mark_complete(ckpt_dir, step, eval_loss_before, resolved_sha256):
    """Write the marker that makes a checkpoint count: last, and atomically."""
    fsync_tree(ckpt_dir)
    write_json_atomic(os.path.join(ckpt_dir, MARKER), {
        "step": step,
        "time": now_rfc3339(),
        "eval_loss_before": eval_loss_before,
        "resolved_sha256": resolved_sha256,
    })


def prune_checkpoints(ckpt_root, newest_step, keep):
    """Delete incomplete checkpoints older than newest_step (debris of a killed attempt) and,
    when keep > 0, the oldest complete ones beyond keep. The Trainer's own rotation is off:
    it runs before the marker exists and could leave fewer complete checkpoints than asked."""
    entries = list_checkpoints(ckpt_root)
    for step, path, marker in entries:
        if marker is None and step < newest_step:
            remove_checkpoint(path)
    complete = [(step, path) for step, path, marker in entries if marker is not None]
    if keep > 0:
        for step, path in complete[:-keep]:
            if step != newest_step:
                remove_checkpoint(path)


def choose_resume(run_dir, resume):
    """Pick the checkpoint to resume from: (path, marker) or (None, None) for a fresh start."""
    ckpt_root = os.path.join(run_dir, "checkpoints")
    complete = [(s, p, m) for s, p, m in list_checkpoints(ckpt_root) if m is not None]
    if resume is None:
        if complete:
            raise ConfigError(
                f"{ckpt_root} already holds complete checkpoints (newest {os.path.basename(complete[-1][1])}): "
                "pass --resume auto to continue from it, or remove that directory to start over")
        return None, None
    if resume == "auto":
        if not complete:
            return None, None
        step, path, marker = max(complete, key=lambda c: c[2]["step"])
        return path, marker
    path = os.path.abspath(resume)
    if not os.path.isdir(path):
        raise ConfigError(f"--resume {resume}: no such checkpoint directory")
    marker = read_marker(path)
    if marker is None:
        raise ConfigError(f"--resume {resume}: checkpoint is incomplete (no valid {MARKER})")
    return path, marker


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
    "where": "FILE:LINE"}, naming file:line on bad input.

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
    Arrow table, which would merge the shapes of tool calls across rows)."""
    rows = []
    with open(path, "rb") as f:  # binary lines end at b"\n" only
        for lineno, raw in enumerate(f, 1):
            where = f"{path}:{lineno}"
            if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            if not raw.strip(ASCII_SPACE):  # not str.strip(): an NBSP-only line is not blank
                continue
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
            rows.append({"messages": clean, "tools": tools, "weights": weights, "where": where})
    if not rows:
        raise ConfigError(f"{path}: no examples")
    return rows


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
