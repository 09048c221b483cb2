#!/usr/bin/env python3
"""Where a kernel's warps wait, instruction by instruction, from Nsight Compute's source page.

A chained kernel's time is often one long dependent chain (a block's loads after its wait, one
warp's routing), which a kernel-wide stall breakdown hides. This sums the warp stall samples of the
launches an `ncu` run profiled, instruction by instruction, and prints the stall reasons over all,
the instructions that hold at least a given share of the samples (with how often warps ran each a
launch: a count below the launch's warps marks code only some blocks or warps run, one above it a
loop), and the sums over ranges of instruction indexes given with --ranges.

    ncu --clock-control none --cache-control none --kernel-name-base mangled -k regex:NAME \\
        --launch-skip 200 --launch-count 10 --warp-sampling-interval 0 \\
        --section SourceCounters --section WarpStateStats --page source --print-source sass --csv \\
        build/dsv3 bench --device cuda ... > NAME.csv
    python3 bench/stall_lines.py NAME.csv [--share 0.01] [--ranges 0-444,444-700]

Instruction indexes count the kernel's SASS instructions in address order (as bench/wait_order.py's).
Nsight Compute may print a launch's table twice; identical consecutive tables count once.
"""
import argparse
import collections
import csv
import sys

SAMPLES = "Warp Stall Sampling (All Samples)"
EXECUTED = "Instructions Executed"


def launches(lines):
    """Each profiled launch's rows (dicts by column name), in order."""
    header, tables = None, []
    for row in csv.reader(line for line in lines if line.startswith('"')):
        if row[0] == "Kernel Name":
            tables.append([])
        elif row[0] == "Address":
            header = row
        elif header and tables and len(row) == len(header):
            tables[-1].append(dict(zip(header, row)))
    distinct = []
    for table in tables:
        if not distinct or table != distinct[-1]:
            distinct.append(table)
    return distinct


def stall_columns(row):
    return [name for name in row if name.startswith("stall_") and "Not Issued" not in name]


def summed(tables):
    """Per instruction: its source text, its warp-level executions a launch, its samples, and those by
    reason."""
    n = min(len(table) for table in tables)
    reasons = stall_columns(tables[0][0])
    out = []
    for i in range(n):
        by_reason = collections.Counter()
        for table in tables:
            by_reason.update({name: int(table[i][name]) for name in reasons})
        samples = sum(int(table[i][SAMPLES]) for table in tables)
        executed = sum(int(table[i][EXECUTED]) for table in tables) // len(tables)
        out.append((tables[0][i]["Source"].strip(), executed, samples, by_reason))
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("csv", help="ncu --page source --print-source sass --csv output ('-' for stdin)")
    parser.add_argument("--share", type=float, default=0.01, help="show instructions with this share of samples")
    parser.add_argument("--ranges", default="", help="instruction index ranges to sum, as 0-444,444-700")
    args = parser.parse_args()
    source = sys.stdin if args.csv == "-" else open(args.csv, encoding="utf-8", errors="replace")
    tables = launches(source)
    if not tables:
        sys.exit("stall_lines.py: no source table in the input (was it run with --page source --csv?)")
    lines = summed(tables)
    total = sum(samples for _, _, samples, _ in lines) or 1
    print(f"{len(tables)} launches, {len(lines)} instructions, {total} samples")
    overall = sum((reasons for _, _, _, reasons in lines), collections.Counter())
    print("by reason: " + ", ".join(f"{k[len('stall_'):]} {v / total:.1%}" for k, v in overall.most_common(8)))
    for i, (text, executed, samples, reasons) in enumerate(lines):
        if samples >= args.share * total:
            top = ", ".join(f"{k[len('stall_'):]} {v}" for k, v in reasons.most_common(2))
            print(f"{i:6d} {samples / total:6.1%} ran {executed:6d}  {text[:60]:60s} {top}")
    for span in filter(None, args.ranges.split(",")):
        begin, end = (int(x) for x in span.split("-"))
        share = sum(samples for _, _, samples, _ in lines[begin:end]) / total
        print(f"instructions {begin}-{end}: {share:.1%} of the samples")


if __name__ == "__main__":
    main()
