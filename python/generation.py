"""Generation with a chat model, base or adapter, that stops where the assistant's turn ends.

Shared by the trainer's task evaluation, eval_task.py, `loractl chat` and the local
OpenAI-compatible test server:

    stop_token_ids(tokenizer)          eos and the chat template's end-of-turn token(s)
    prompt_ids(tokenizer, messages)    the prompt as the template renders it for a reply
    load_model(resolved, adapter_path) base model (as training loaded it) [+ PEFT adapter]
    Generator(model, tokenizer).generate(conversations, adapter=True|False)
    Generator(model, tokenizer).stream(messages)

Why the end-of-turn token matters: many real models end an assistant turn with a token that
is not their eos (Llama 3's <|eot_id|>, ChatML's <|im_end|>, Gemma's <end_of_turn>). A
generator that stops only at eos runs on past the turn into an invented next turn until
max_new_tokens, and a reply that never ends looks like a failed fine-tune. The token is found
by rendering a probe conversation with the tokenizer's own template, so no list of model
families is needed.

torch and transformers are imported inside the functions that need them: importing this
module for stop_token_ids alone stays cheap.
"""

import queue
import threading

# Assistant content of the probe conversation. A word unlikely to be merged with what a
# template puts around it, so it can be found in the rendered text.
_PROBE_USER = "probeuser"
_PROBE_REPLY = "probereply"


def _eos_ids(tokenizer):
    eos = getattr(tokenizer, "eos_token_id", None)
    if eos is None:
        return []
    return list(eos) if isinstance(eos, (list, tuple)) else [eos]


def _special_ids(tokenizer):
    """Ids of special and added tokens: the only tokens that can end a turn."""
    ids = set(getattr(tokenizer, "all_special_ids", []) or [])
    decoder = getattr(tokenizer, "added_tokens_decoder", None) or {}
    ids.update(decoder.keys())
    return ids


def _end_of_turn_ids(tokenizer):
    """Tokens the chat template puts right after assistant content, found by rendering
    [user, assistant] (and, for templates that require one, [system, user, assistant]) and
    tokenizing what follows the reply: leading whitespace is skipped; the special tokens up
    to the first ordinary text are the end of turn. A template that cannot render the probe
    gives none (eos still stops)."""
    template = getattr(tokenizer, "chat_template", None)
    if not template:
        return []
    probes = [
        [{"role": "user", "content": _PROBE_USER}, {"role": "assistant", "content": _PROBE_REPLY}],
        [{"role": "system", "content": "probesystem"}, {"role": "user", "content": _PROBE_USER},
         {"role": "assistant", "content": _PROBE_REPLY}],
    ]
    special = _special_ids(tokenizer)
    for messages in probes:
        try:
            text = tokenizer.apply_chat_template(messages, tokenize=False)
        except Exception:  # noqa: BLE001 - templates raise anything (jinja2 errors, raise_exception)
            continue
        if not isinstance(text, str) or _PROBE_REPLY not in text:
            continue
        rest = text[text.rindex(_PROBE_REPLY) + len(_PROBE_REPLY):]
        found = []
        for tid in tokenizer(rest, add_special_tokens=False)["input_ids"]:
            if tid in special:
                found.append(tid)
                continue
            if tokenizer.decode([tid]).strip() == "" and not found:
                continue  # whitespace between the reply and its end token
            break
        return found
    return []


def stop_token_ids(tokenizer):
    """eos_token_id(s), then every token the chat template puts right after assistant
    content, deduplicated, in that order."""
    out = []
    for tid in _eos_ids(tokenizer) + _end_of_turn_ids(tokenizer):
        if tid is not None and tid not in out:
            out.append(int(tid))
    return out


def prompt_ids(tokenizer, messages, tools=None):
    """The token ids of `messages` rendered for a reply (add_generation_prompt=True) by the
    tokenizer's chat template: the template the trainer tokenizes with (TRL's training
    templates render the same text, with generation markers added)."""
    enc = tokenizer.apply_chat_template(messages, tools=tools, add_generation_prompt=True,
                                        tokenize=True, return_dict=True)
    ids = enc["input_ids"]
    if ids and isinstance(ids[0], list):  # a batch of one
        ids = ids[0]
    return [int(i) for i in ids]


def resolve_dtype(resolved, cuda):
    """The torch dtype training used: train.precision, auto = bf16/fp16 on a GPU, fp32 on the CPU."""
    import torch
    precision = resolved.get("train", {}).get("precision", "auto")
    if precision == "auto":
        precision = ("bf16" if torch.cuda.is_bf16_supported() else "fp16") if cuda else "fp32"
    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[precision]


def load_model(resolved, adapter_path=None, device=None):
    """(model, tokenizer): the base model of resolved["model"] loaded as the trainer loads it
    (revision, trust_remote_code, quantization, precision), wrapped as a PeftModel with the
    adapter at adapter_path when one is given. In eval mode, on `device` (default: the GPU
    when there is one, else the CPU)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig
    m = resolved["model"]
    q = resolved.get("quantization", {"mode": "none"})
    cuda = torch.cuda.is_available() if device is None else str(device).startswith("cuda")
    dtype = resolve_dtype(resolved, cuda)
    common = {"revision": m.get("revision") or None, "trust_remote_code": bool(m.get("trust_remote_code"))}
    tokenizer = AutoTokenizer.from_pretrained(m["name_or_path"], **common)
    kwargs = dict(common, dtype=dtype)
    if q.get("mode", "none") != "none":
        compute = torch.bfloat16 if dtype == torch.bfloat16 else torch.float16
        kwargs["quantization_config"] = (
            BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=q.get("quant_type", "nf4"),
                               bnb_4bit_use_double_quant=q.get("double_quant", True),
                               bnb_4bit_compute_dtype=compute)
            if q["mode"] == "4bit" else BitsAndBytesConfig(load_in_8bit=True))
        kwargs["device_map"] = {"": torch.cuda.current_device()}
    model = AutoModelForCausalLM.from_pretrained(m["name_or_path"], **kwargs)
    if "device_map" not in kwargs:
        model.to(device or ("cuda" if cuda else "cpu"))
    if adapter_path:
        from peft import PeftModel
        model = PeftModel.from_pretrained(model, adapter_path, is_trainable=False)
    model.eval()
    return model, tokenizer


class _Adapter:
    """Context: the model with its adapter enabled (as it is) or disabled (PeftModel's
    disable_adapter). A model that is not a PeftModel has no adapter to switch: it is
    used as it is either way."""

    def __init__(self, model, enabled):
        self.ctx = None
        if not enabled and hasattr(model, "disable_adapter") and hasattr(model, "peft_config"):
            self.ctx = model.disable_adapter()

    def __enter__(self):
        if self.ctx is not None:
            self.ctx.__enter__()

    def __exit__(self, *exc):
        if self.ctx is not None:
            return self.ctx.__exit__(*exc)
        return False


class Generator:
    """Batched generation of assistant replies through the chat template.

    Greedy unless do_sample; stops at every id of stop_token_ids(tokenizer) and the model's
    generation_config eos ids. Each result is {"text", "tokens", "stopped"}: text is the reply
    with special tokens and surrounding whitespace removed, tokens the count of new tokens
    (the stop token included), stopped "eos" (a stop token ended it) or "max_tokens"."""

    def __init__(self, model, tokenizer, max_new_tokens=256, batch_size=8, do_sample=False,
                 temperature=None, top_p=None, seed=None):
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model = model
        self.tokenizer = tokenizer
        self.max_new_tokens = max_new_tokens
        self.batch_size = batch_size
        self.do_sample = do_sample
        self.temperature = temperature
        self.top_p = top_p
        self.seed = seed
        stops = stop_token_ids(tokenizer)
        gen_cfg = getattr(model, "generation_config", None)
        extra = getattr(gen_cfg, "eos_token_id", None) if gen_cfg is not None else None
        for tid in (extra if isinstance(extra, (list, tuple)) else [extra]):
            if tid is not None and int(tid) not in stops:
                stops.append(int(tid))
        if not stops:
            raise ValueError("the tokenizer has no eos token and its chat template no end-of-turn token: "
                             "generation could not stop before max_new_tokens")
        self.stop_ids = stops
        pad = tokenizer.pad_token_id
        self.pad_id = int(pad) if pad is not None else stops[0]

    # ---- helpers

    def _device(self):
        try:
            return next(self.model.parameters()).device
        except StopIteration:  # pragma: no cover - a model without parameters
            return "cpu"

    def _gen_kwargs(self):
        kw = dict(max_new_tokens=self.max_new_tokens, do_sample=self.do_sample, use_cache=True,
                  eos_token_id=self.stop_ids, pad_token_id=self.pad_id)
        if self.do_sample:
            if self.temperature is not None:
                kw["temperature"] = self.temperature
            if self.top_p is not None:
                kw["top_p"] = self.top_p
        else:
            # The model's generation_config may carry sampling settings; greedy ignores them,
            # and saying so keeps transformers from warning about each one.
            kw.update(temperature=None, top_p=None, top_k=None)
        return kw

    def _seed(self):
        if self.seed is not None:
            import torch
            torch.manual_seed(self.seed)

    def _result(self, new_ids):
        """One reply from its generated ids (possibly padded after the stop token)."""
        stop = next((i for i, t in enumerate(new_ids) if t in self.stop_ids), None)
        if stop is None:
            body, tokens, stopped = new_ids, len(new_ids), "max_tokens"
        else:
            body, tokens, stopped = new_ids[:stop], stop + 1, "eos"
        text = self.tokenizer.decode(body, skip_special_tokens=True).strip()
        return {"text": text, "tokens": tokens, "stopped": stopped}

    # ---- batch

    def generate(self, conversations, adapter=True, progress=None):
        """Replies to each conversation (a list of messages ending before the reply), in
        order. Batches of batch_size, left-padded so every prompt ends where generation
        starts; the KV cache is on. adapter=False generates with the adapter disabled.
        progress(done, total) is called after each batch when given."""
        import torch
        prompts = [prompt_ids(self.tokenizer, c) for c in conversations]
        # Longest first: batches of similar lengths waste less on padding; results go back in order.
        order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
        results = [None] * len(prompts)
        device = self._device()
        was_training = self.model.training
        self.model.eval()
        try:
            with _Adapter(self.model, adapter), torch.inference_mode():
                for start in range(0, len(order), self.batch_size):
                    batch = order[start:start + self.batch_size]
                    width = max(len(prompts[i]) for i in batch)
                    ids = torch.full((len(batch), width), self.pad_id, dtype=torch.long)
                    mask = torch.zeros((len(batch), width), dtype=torch.long)
                    for row, i in enumerate(batch):
                        p = prompts[i]
                        ids[row, width - len(p):] = torch.tensor(p, dtype=torch.long)
                        mask[row, width - len(p):] = 1
                    self._seed()
                    out = self.model.generate(input_ids=ids.to(device), attention_mask=mask.to(device),
                                              **self._gen_kwargs())
                    for row, i in enumerate(batch):
                        results[i] = self._result(out[row, width:].tolist())
                    if progress is not None:
                        progress(min(start + self.batch_size, len(order)), len(order))
        finally:
            if was_training:
                self.model.train()
        return results

    # ---- streaming

    def stream(self, messages, adapter=True):
        """Yield the reply to `messages` as text pieces while it is generated (never a
        special token, never a partial UTF-8 character), then the result dict as generate
        returns it. The pieces joined are the reply before its surrounding whitespace is
        stripped."""
        import torch
        from transformers.generation.streamers import BaseStreamer

        pieces = queue.Queue()
        done = object()
        tokenizer, stop_ids = self.tokenizer, set(self.stop_ids)

        class _Streamer(BaseStreamer):
            def __init__(self):
                self.ids = []
                self.sent = ""
                self.first = True  # generate's first put() is the prompt
                self.stopped = False

            def put(self, value):
                if self.first:
                    self.first = False
                    return
                for tid in value.reshape(-1).tolist():
                    if self.stopped:
                        return
                    if tid in stop_ids:
                        self.stopped = True
                        return
                    self.ids.append(tid)
                text = tokenizer.decode(self.ids, skip_special_tokens=True)
                if text.endswith("\ufffd"):
                    return  # a character split across tokens: wait for the rest
                if len(text) > len(self.sent) and text.startswith(self.sent):
                    pieces.put(text[len(self.sent):])
                    self.sent = text

            def end(self):
                pass

        holder = {}
        prompt = prompt_ids(self.tokenizer, messages)
        device = self._device()

        def work():
            try:
                with _Adapter(self.model, adapter), torch.inference_mode():
                    self._seed()
                    ids = torch.tensor([prompt], dtype=torch.long, device=device)
                    out = self.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                                              streamer=_Streamer(), **self._gen_kwargs())
                    holder["ids"] = out[0, len(prompt):].tolist()
            except BaseException as e:  # noqa: BLE001 - handed to the consumer's thread
                holder["error"] = e
            finally:
                pieces.put(done)

        was_training = self.model.training
        self.model.eval()
        thread = threading.Thread(target=work, name="generation-stream", daemon=True)
        thread.start()
        try:
            while True:
                piece = pieces.get()
                if piece is done:
                    break
                yield piece
        finally:
            thread.join()
            if was_training:
                self.model.train()
        if "error" in holder:
            raise holder["error"]
        yield self._result(holder["ids"])
