#!/usr/bin/env python3
"""The baseline for `loractl data check`: the same structural checks in plain Python.

    python3 baseline.py FILE

Written the way one would write it without loractl: json.loads per line, the schema
checks of each message, and a set of content hashes (whitespace-normalised) for
duplicates. It counts errors exactly as the Go checker does, so bench/datacheck can
verify that both agree before comparing their speed, and prints one JSON object:
{"examples", "valid", "errors", "duplicates"}.
"""

import hashlib
import json
import sys

ROLES = {"system", "user", "assistant", "tool"}
EXTRA_KEYS = {"name", "tool_calls", "tool_call_id", "reasoning_content", "thinking"}
SPACE = " \t\n\r\v\f"


def norm(s):
    return " ".join(s.split())


def check_line(raw):
    """Return (number of errors, duplicate key or None) for one non-blank line."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return 1, None
    try:
        row = json.loads(text)
    except ValueError:
        return 1, None
    if not isinstance(row, dict):
        return 1, None
    if "messages" not in row:
        return 1, None
    msgs = row["messages"]
    if not isinstance(msgs, list):
        return 1, None
    if not msgs:
        return 1, None
    errors = 0
    msg_errors = False
    for m in msgs:
        if not isinstance(m, dict):
            errors += 1
            msg_errors = True
            continue
        bad = 0
        role = m.get("role")
        if "role" not in m:
            bad += 1
        elif not isinstance(role, str) or role not in ROLES:
            bad += 1
        if "content" not in m:
            bad += 1
        elif not isinstance(m["content"], str):
            bad += 1
        if "weight" in m:
            w = m["weight"]
            if isinstance(w, bool) or not isinstance(w, (int, float)) or w not in (0, 1):
                bad += 1
        for k in m:
            if k not in ("role", "content", "weight") and k not in EXTRA_KEYS:
                bad += 1
        if role == "assistant" and isinstance(m.get("content"), str) and not m["content"].strip(SPACE):
            bad += 1
        errors += bad
        msg_errors = msg_errors or bad > 0
    if not msg_errors:
        if not any(m["role"] == "assistant" and m.get("weight", 1) != 0 for m in msgs):
            errors += 1
    if errors:
        return errors, None
    h = hashlib.blake2b(digest_size=16)
    for m in msgs:
        if m["role"] != "system":
            h.update(m["role"].encode() + b"\0" + norm(m["content"]).encode() + b"\xff")
    h.update(b"\xfe")
    for m in msgs:
        if m["role"] == "system":
            h.update(norm(m["content"]).encode() + b"\xff")
    return 0, h.digest()


def main(path):
    examples = valid = errors = duplicates = 0
    seen = set()
    blank = 0
    with open(path, "rb") as f:
        for n, raw in enumerate(f, 1):
            if n == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            if not raw.strip():
                blank += 1
                continue
            errors += blank  # blank lines inside the file are errors
            blank = 0
            examples += 1
            e, key = check_line(raw)
            errors += e
            if key is None:
                continue
            valid += 1
            if key in seen:
                duplicates += 1
            else:
                seen.add(key)
    if examples < 10:
        errors += 1
    print(json.dumps({"examples": examples, "valid": valid, "errors": errors, "duplicates": duplicates}))


if __name__ == "__main__":
    main(sys.argv[1])
