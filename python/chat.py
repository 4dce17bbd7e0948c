#!/usr/bin/env python3
"""Chat with a run's model: `loractl chat` runs this with the trainer's interpreter, its
stdin and stdout passed through.

    python chat.py --resolved RUN/resolved.json --adapter DIR [--base] [--system-prompt TEXT]
        [--max-new-tokens 256] [-p PROMPT [--json]]

Interactive by default: a multi-turn conversation whose replies stream as they are
generated. Commands: /base and /adapter switch the adapter off and on for the same
conversation (PEFT's disable_adapter), /reset starts over, /system TEXT sets the system
prompt (/system alone removes it), /help, /quit (or Ctrl-D). With -p it answers once;
--json then prints {"reply", "stopped": "eos"|"max_tokens", "tokens"}.

Generation is generation.py's (shared with task evaluation): the prompt is the chat
template's rendering, a reply ends at eos or the template's end-of-turn token, and no
special token is ever printed.
"""

import argparse
import json
import sys

from train_lora_support import ConfigError, exit_now, load_config

EXIT_FAILED, EXIT_INVALID, EXIT_INTERRUPTED = 1, 2, 130

HELP = """commands:
  /base          answer with the base model (adapter off), same conversation
  /adapter       answer with the adapter on (the default)
  /reset         forget the conversation (the system prompt stays)
  /system TEXT   set the system prompt and start over; /system alone removes it
  /help          this list
  /quit          leave (Ctrl-D too)"""


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--resolved", required=True)
    p.add_argument("--adapter", required=True)
    p.add_argument("--base", action="store_true", help="start with the adapter off")
    p.add_argument("--system-prompt", default="")
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument("-p", "--prompt", default=None, help="answer this once and exit")
    p.add_argument("--json", action="store_true", help="with -p: print the result as JSON")
    args = p.parse_args(argv)
    if args.max_new_tokens < 1:
        p.error("--max-new-tokens must be >= 1")
    if args.json and args.prompt is None:
        p.error("--json needs -p PROMPT")
    return args


class Session:
    """One conversation: the messages so far, the system prompt, adapter on or off."""

    def __init__(self, generator, system_prompt, adapter):
        self.gen = generator
        self.system = system_prompt
        self.adapter = adapter
        self.turns = []

    def messages(self, user):
        head = [{"role": "system", "content": self.system}] if self.system else []
        return head + self.turns + [{"role": "user", "content": user}]

    def reply(self, user, out=None):
        """Generate the reply to user (streamed to out when given); the turn is kept."""
        result = None
        for piece in self.gen.stream(self.messages(user), adapter=self.adapter):
            if isinstance(piece, dict):
                result = piece
            elif out is not None:
                out.write(piece)
                out.flush()
        self.turns += [{"role": "user", "content": user}, {"role": "assistant", "content": result["text"]}]
        return result

    def command(self, line, out):
        """Handle a /command; False when it ends the session."""
        name, _, rest = line.partition(" ")
        if name in ("/quit", "/exit"):
            return False
        if name == "/base":
            self.adapter = False
            out.write("(base model: adapter off)\n")
        elif name == "/adapter":
            self.adapter = True
            out.write("(adapter on)\n")
        elif name == "/reset":
            self.turns = []
            out.write("(conversation reset)\n")
        elif name == "/system":
            self.system, self.turns = rest.strip(), []
            out.write(f"(system prompt {'set' if self.system else 'removed'}; conversation reset)\n")
        elif name == "/help":
            out.write(HELP + "\n")
        else:
            out.write(f"unknown command {name}; /help lists them\n")
        out.flush()
        return True


def repl(session, stdin, out):
    interactive = stdin.isatty()
    if interactive:
        try:
            import readline  # noqa: F401 - line editing and history for input()
        except ImportError:
            pass
    out.write(f"chatting with the {'adapter' if session.adapter else 'base model'}; /help for commands, Ctrl-D to leave\n")
    out.flush()
    while True:
        tag = "adapter" if session.adapter else "base"
        try:
            if interactive:
                line = input(f"[{tag}] you> ")
            else:
                out.write(f"[{tag}] you> ")
                out.flush()
                line = stdin.readline()
                if not line:
                    raise EOFError
        except EOFError:
            out.write("\n")
            return
        line = line.strip()
        if not line:
            continue
        if line.startswith("/"):
            if not session.command(line, out):
                return
            continue
        out.write(f"[{tag}] assistant> ")
        out.flush()
        result = session.reply(line, out)
        note = "" if result["stopped"] == "eos" else f"  [stopped at --max-new-tokens {session.gen.max_new_tokens}]"
        out.write(f"{note}\n")
        out.flush()


def main(argv=None):
    try:
        return chat(parse_args(sys.argv[1:] if argv is None else argv))
    except KeyboardInterrupt:
        sys.stdout.write("\n")
        return EXIT_INTERRUPTED


def chat(args):
    try:
        cfg, _ = load_config(args.resolved)
    except ConfigError as e:
        print(f"chat: {e}", file=sys.stderr)
        return EXIT_INVALID
    from generation import Generator, load_model
    print(f"chat: loading {cfg['model']['name_or_path']} with the adapter {args.adapter}", file=sys.stderr, flush=True)
    model, tokenizer = load_model(cfg, args.adapter)
    if not tokenizer.chat_template:
        print(f"chat: the tokenizer of {cfg['model']['name_or_path']} has no chat template", file=sys.stderr)
        return EXIT_INVALID
    gen = Generator(model, tokenizer, max_new_tokens=args.max_new_tokens, batch_size=1)
    session = Session(gen, args.system_prompt, adapter=not args.base)
    if args.prompt is None:
        repl(session, sys.stdin, sys.stdout)
        return 0
    if args.json:
        r = session.reply(args.prompt)
        print(json.dumps({"reply": r["text"], "stopped": r["stopped"], "tokens": r["tokens"]}, ensure_ascii=False))
    else:
        r = session.reply(args.prompt, sys.stdout)
        sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    exit_now(main())  # without the 1.3 s module teardown
