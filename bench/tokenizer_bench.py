#!/usr/bin/env python3
"""Encode throughput, single thread: dsv3's tokenizer beside the Hugging Face `tokenizers` library.

Both encode the same files in the same run: every document of tests/fixtures/tokenizer/corpus and
their concatenation repeated (about 1 MB). Each is encoded at least 3 times and for at least
--min-seconds; MB/s counts 10^6 bytes of UTF-8 input. `tokenizers` runs with one thread
(RAYON_NUM_THREADS=1; a single encode() does not use more anyway) and its per-call Python cost is
part of its time, as it is for its users. Prints a Markdown table.

    python3 bench/tokenizer_bench.py --tokenizer-dir DIR --binary build/bench/bench_tokenizer
"""
import argparse
import json
import os
import pathlib
import platform
import statistics
import subprocess
import tempfile
import time

os.environ["RAYON_NUM_THREADS"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
import tokenizers  # noqa: E402  (after the thread settings)

CORPUS = pathlib.Path("tests/fixtures/tokenizer/corpus")
CONCATENATION_REPEATS = 25


def cpu_name() -> str:
    for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def time_hf(tokenizer: tokenizers.Tokenizer, text: str, min_seconds: float) -> tuple[float, int]:
    iterations, start = 0, time.perf_counter()
    while True:
        n_tokens = len(tokenizer.encode(text).ids)
        iterations += 1
        elapsed = time.perf_counter() - start
        if iterations >= 3 and elapsed >= min_seconds:
            return elapsed / iterations, n_tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tokenizer-dir", required=True)
    parser.add_argument("--binary", required=True, help="the bench_tokenizer executable")
    parser.add_argument("--min-seconds", type=float, default=0.5)
    parser.add_argument("--json", help="also write the measurements here")
    args = parser.parse_args()

    texts = {p.stem: p.read_bytes().decode("utf-8") for p in sorted(CORPUS.glob("*.txt"))}
    texts = {name: text for name, text in texts.items() if text}
    texts["all_concatenated"] = "\n".join(texts.values()) * CONCATENATION_REPEATS

    with tempfile.TemporaryDirectory() as tmp:
        files = []
        for name, text in texts.items():
            path = pathlib.Path(tmp) / f"{name}.txt"
            path.write_bytes(text.encode("utf-8"))
            files.append(str(path))
        output = subprocess.run([args.binary, args.tokenizer_dir, *files, "--min-seconds",
                                 str(args.min_seconds)], check=True, capture_output=True, text=True)
    ours = {}
    for line in output.stdout.splitlines():
        record = json.loads(line)
        if "doc" in record:
            ours[record["doc"]] = record

    hf_tokenizer = tokenizers.Tokenizer.from_file(os.path.join(args.tokenizer_dir, "tokenizer.json"))
    rows = []
    for name, text in texts.items():
        n_bytes = len(text.encode("utf-8"))
        hf_seconds, hf_tokens = time_hf(hf_tokenizer, text, args.min_seconds)
        mine = ours[name]
        rows.append({"doc": name, "bytes": n_bytes, "tokens": hf_tokens,
                     "same_token_count": hf_tokens == mine["tokens"],
                     "hf_mb_per_s": n_bytes / hf_seconds / 1e6, "dsv3_mb_per_s": mine["mb_per_s"]})

    print(f"CPU: {cpu_name()}; tokenizers {tokenizers.__version__}; one thread each\n")
    print("| document | bytes | tokens | tokenizers MB/s | dsv3 MB/s | speed-up |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        flag = "" if r["same_token_count"] else " (token counts differ!)"
        print(f"| {r['doc']}{flag} | {r['bytes']} | {r['tokens']} | {r['hf_mb_per_s']:.2f} | "
              f"{r['dsv3_mb_per_s']:.1f} | {r['dsv3_mb_per_s'] / r['hf_mb_per_s']:.1f}x |")
    speedups = [r["dsv3_mb_per_s"] / r["hf_mb_per_s"] for r in rows]
    print(f"\nspeed-up: geometric mean {statistics.geometric_mean(speedups):.1f}x, "
          f"min {min(speedups):.1f}x, max {max(speedups):.1f}x")
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps({"cpu": cpu_name(), "tokenizers_version":
                                                       tokenizers.__version__, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
