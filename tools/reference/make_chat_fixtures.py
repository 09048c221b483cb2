#!/usr/bin/env python3
"""Renders every conversation of tests/fixtures/chat/conversations.json with every template of
tests/fixtures/chat/templates/ as transformers' apply_chat_template does (jinja2's sandbox with
trim_blocks and lstrip_blocks, raise_exception, tojson with ensure_ascii off, tools=None when absent),
and encodes the text with `tokenizers` (not AutoTokenizer). Where jinja2 raises, the case records the
error instead. Every render is checked against transformers' own render_jinja_template (the renderer
of apply_chat_template). Writes tests/fixtures/chat/expected.json.

Run on the GPU machine:  python3 tools/reference/make_chat_fixtures.py TOKENIZER_DIR
"""
import json
import os
import sys

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment
from tokenizers import Tokenizer
from transformers.utils.chat_template_utils import render_jinja_template

ROOT = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "fixtures", "chat")


def raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def check_transformers_fails(source, conversation, args):
    try:
        render_jinja_template([conversation["messages"]], chat_template=source, **args)
    except Exception:
        return
    raise AssertionError("jinja2 fails where transformers renders")


def main():
    tokenizer_dir = sys.argv[1]
    tokenizer = Tokenizer.from_file(os.path.join(tokenizer_dir, "tokenizer.json"))
    config = json.load(open(os.path.join(tokenizer_dir, "tokenizer_config.json"), encoding="utf-8"))
    bos = config["bos_token"]["content"] if isinstance(config["bos_token"], dict) else config["bos_token"]
    eos = config["eos_token"]["content"] if isinstance(config["eos_token"], dict) else config["eos_token"]
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    conversations = json.load(open(os.path.join(ROOT, "conversations.json"), encoding="utf-8"))
    cases = []
    for name in sorted(os.listdir(os.path.join(ROOT, "templates"))):
        source = open(os.path.join(ROOT, "templates", name), encoding="utf-8").read()
        template = env.from_string(source)
        for index, conversation in enumerate(conversations):
            args = dict(tools=conversation.get("tools"), add_generation_prompt=conversation["add_generation_prompt"],
                        bos_token=bos, eos_token=eos)
            try:
                text = template.render(messages=conversation["messages"], **args)
            except Exception as e:  # the template itself fails on this conversation
                check_transformers_fails(source, conversation, args)
                cases.append({"template": name, "conversation": index, "error": f"{type(e).__name__}: {e}"})
                continue
            rendered, _ = render_jinja_template([conversation["messages"]], chat_template=source, **args)
            assert rendered[0] == text, f"{name} conversation {index}: transformers renders differently"
            cases.append({"template": name, "conversation": index, "text": text,
                          "ids": tokenizer.encode(text, add_special_tokens=False).ids})
    with open(os.path.join(ROOT, "expected.json"), "w", encoding="utf-8") as f:
        json.dump(cases, f, ensure_ascii=False, indent=1)
    print(f"{len(cases)} cases, {sum('error' in c for c in cases)} of them errors")


if __name__ == "__main__":
    main()
