"""The base model's evaluation, cached across runs: its eval loss and per-example losses
before training, and its replies to the task evaluation's prompts.

Both depend on the base model and on how the eval set is built and run, not on the LoRA,
the optimiser or the schedule: every point of a learning-rate or rank sweep evaluates the
same base model on the same examples. The controller names a shared directory in
LORACTL_BASE_EVAL_CACHE (unset: no cache, e.g. `--no-cache` or `loractl reproduce`); an
entry is keyed by resolved.json without the settings in IGNORED, plus what resolved.json
only names (the model files, the data files' contents), the library versions, the device
kind and the precision. A lock per key makes parallel sweep points compute an entry once:
the others wait for it and reuse it. Entries are written whole (temp file and rename);
one that does not parse is computed again. The cache directory can be deleted at any time.
"""

import contextlib
import fcntl
import hashlib
import json
import os
import time

ENV = "LORACTL_BASE_EVAL_CACHE"

# Settings of resolved.json that do not change the base model's evaluation: they shape
# the adapter and its training, or name things. Everything else keys the cache, so a
# setting added later is a cache miss until it is listed here, never a stale hit.
IGNORED = {
    "name": None,
    "lora": None,
    "distributed": None,
    "train": {"epochs", "max_steps", "learning_rate", "batch_size", "batch_size_auto", "grad_accum",
              "effective_batch_size", "effective_batch_size_set", "warmup", "scheduler", "gradient_checkpointing",
              "logging_steps", "eval_steps", "save_steps", "save_total_limit", "weight_decay", "max_grad_norm",
              "optim", "report_to", "select", "early_stopping_patience"},
    # The base replies are keyed by max_new_tokens and the prompts separately; scores are
    # always computed afresh from the replies, so the metrics are not part of the key.
    "eval": {"generate", "metrics", "primary", "min_improvement", "at_checkpoints", "max_new_tokens",
             "max_examples"},
}

# Files up to this size are hashed; larger ones (weights) are identified by size and
# modification time, so a cache lookup never reads gigabytes.
HASH_LIMIT = 4 << 20


def keyed_settings(cfg):
    """cfg without the IGNORED settings."""
    out = {}
    for section, value in cfg.items():
        if section in IGNORED and IGNORED[section] is None:
            continue
        if section in IGNORED and isinstance(value, dict):
            value = {k: v for k, v in value.items() if k not in IGNORED[section]}
        out[section] = value
    return out


def _file_identity(path, h):
    st = os.stat(path)
    if st.st_size <= HASH_LIMIT:
        with open(path, "rb") as f:
            h.update(hashlib.sha256(f.read()).digest())
    else:
        h.update(f"{st.st_size}:{st.st_mtime_ns}".encode())


def fingerprint(path):
    """A digest of a file or a directory tree's files (names, and contents or size+mtime);
    for a name that is not a local path (a hub id) the name alone."""
    h = hashlib.sha256()
    if os.path.isfile(path):
        _file_identity(path, h)
    elif os.path.isdir(path):
        for root, dirs, files in os.walk(path):
            dirs.sort()
            for name in sorted(files):
                full = os.path.join(root, name)
                h.update(os.path.relpath(full, path).encode() + b"\0")
                _file_identity(full, h)
    else:
        h.update(b"name:" + path.encode())
    return h.hexdigest()


def model_identity(name_or_path, revision=None, cache_dir=None):
    """A local model directory's fingerprint; for a hub id, that of the snapshot in the
    local Hugging Face cache (its path names the commit), so a model updated in the cache
    is a new key. A hub id that is not cached (or no huggingface_hub) is its name alone."""
    if os.path.exists(name_or_path):
        return fingerprint(name_or_path)
    try:
        from huggingface_hub import snapshot_download
        return fingerprint(snapshot_download(name_or_path, revision=revision, local_files_only=True,
                                             cache_dir=cache_dir))
    except Exception:  # noqa: BLE001 - not cached, offline, not a repo id: the name stands
        return fingerprint(name_or_path)


def cache_key(cfg, versions, device_kind, precision):
    """The entry key for a run: a hex digest."""
    settings = keyed_settings(cfg)
    # Files by what they hold, not where they are: a copy of the data or of the model
    # shares the entry, a file changed in place does not.
    d = dict(settings["data"])
    d["train"] = fingerprint(d["train"]) if d.get("eval_split") else ""
    d["eval"] = fingerprint(d["eval"]) if d.get("eval") else ""
    model = dict(settings["model"])
    model["name_or_path"] = model_identity(model["name_or_path"], model.get("revision") or None)
    settings.update(data=d, model=model)
    inputs = {
        "settings": settings,
        "versions": versions,
        "device": device_kind,
        "precision": precision,
    }
    return hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()[:32]


def generation_key(eval_cfg, examples, batch_size):
    """The key of the base replies within an entry: the prompts, the token budget and the
    generation batch (left padding makes a reply depend slightly on its batch)."""
    h = hashlib.sha256()
    h.update(json.dumps({"max_new_tokens": eval_cfg["max_new_tokens"], "batch": batch_size,
                         "prompts": [[e["index"], e["messages"], e.get("tools")] for e in examples]},
                        sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


class BaseEvalCache:
    """One run's view of its cache entry."""

    def __init__(self, root, key, run_name):
        self.dir = os.path.join(root, key)
        self.key = key
        self.run_name = run_name

    @classmethod
    def from_env(cls, cfg, versions, device_kind, precision, run_dir, environ=os.environ):
        """The cache named by LORACTL_BASE_EVAL_CACHE, or None when it is unset."""
        root = environ.get(ENV, "")
        if not root:
            return None
        return cls(root, cache_key(cfg, versions, device_kind, precision), os.path.basename(run_dir))

    @contextlib.contextmanager
    def locked(self, name, poll=0.2):
        """Hold the entry's lock for `name`: one process computes, the others wait. The lock
        is released when the process dies, so a killed run never blocks the next."""
        os.makedirs(self.dir, exist_ok=True)
        fd = os.open(os.path.join(self.dir, f"{name}.lock"), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    time.sleep(poll)  # short sleeps: a stop signal is handled between them
            yield
        finally:
            os.close(fd)

    def _read(self, name):
        path = os.path.join(self.dir, name)
        try:
            with open(path, encoding="utf-8") as f:
                return json.load(f), None
        except FileNotFoundError:
            return None, None
        except (OSError, ValueError) as e:
            return None, f"{path}: {e}"

    def _write(self, name, value):
        path = os.path.join(self.dir, name)
        tmp = f"{path}.tmp-{os.getpid()}"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(value, f, allow_nan=False)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    def load_before(self):
        """(the before evaluation {"metrics", "losses", "stored_by"}, problem) or (None, problem)."""
        value, problem = self._read("before.json")
        if value is not None and not (isinstance(value, dict) and isinstance(value.get("metrics"), dict)
                                      and isinstance(value["metrics"].get("eval_loss"), (int, float))):
            return None, f"{os.path.join(self.dir, 'before.json')}: not a cached evaluation"
        return value, problem

    def store_before(self, metrics, losses):
        self._write("before.json", {"metrics": metrics, "losses": losses, "stored_by": self.run_name})

    def load_replies(self, gen_key, n):
        """(the base replies [{"text", "tokens", "stopped"}] × n, stored_by, problem)."""
        value, problem = self._read(f"replies-{gen_key}.json")
        if value is None:
            return None, None, problem
        replies = value.get("replies") if isinstance(value, dict) else None
        if not isinstance(replies, list) or len(replies) != n or not all(
                isinstance(r, dict) and isinstance(r.get("text"), str) for r in replies):
            return None, None, f"{os.path.join(self.dir, f'replies-{gen_key}.json')}: not {n} cached replies"
        return replies, value.get("stored_by"), None

    def store_replies(self, gen_key, replies):
        keep = [{"text": r["text"], "tokens": r["tokens"], "stopped": r["stopped"]} for r in replies]
        self._write(f"replies-{gen_key}.json", {"replies": keep, "stored_by": self.run_name})
