#!/usr/bin/env python3
"""Where each chained kernel's wait falls among its global loads, from the SASS of a CUDA build.

Chained kernels ask for stored weights before wait_for_inputs() so that the loads are in flight
while the kernel ahead finishes (src/dsv3/backend/cuda/chained_launch.cuh). ptxas decides the final
order: it has put the wait (ACQBULK, griddepcontrol.wait) ahead of ld.global.nc loads, so that they
were issued only after it (bench/RESULTS.md, "weights in flight before the wait"). This prints, for
every kernel with a wait, each wait's instruction index, the global loads (LDG) before it, and where
launch_dependents (PREEXIT) falls: a kernel that means to load before its wait and shows 0 loads
before every wait does not.

    cuobjdump -sass build/dsv3 > dsv3.sass     # on a machine with the CUDA toolkit's cuobjdump
    python3 bench/wait_order.py dsv3.sass [--kernel SUBSTRING]

Instruction indexes count a kernel's SASS instructions in address order; a kernel has one wait per
path the compiler kept apart (linear_small: the blocks with rows, and those past the last row).
"""
import argparse
import re
import sys

FUNCTION = re.compile(r"Function : (\S+)")
INSTRUCTION = re.compile(r"\s*/\*([0-9a-f]{4,})\*/\s+(.*?);")


def short_name(mangled):
    """The kernel's own name and, mangled, its template arguments: the last of the nested names
    (<length><identifier> ... after _ZN) and what follows it."""
    if not mangled.startswith("_ZN"):
        return mangled
    at, name = 3, mangled
    while at < len(mangled) and mangled[at].isdigit():
        digits = re.match(r"\d+", mangled[at:]).group(0)
        length = int(digits)
        name = mangled[at + len(digits):at + len(digits) + length]
        at += len(digits) + length
    return name + mangled[at:]


def kernels(lines):
    """(mangled name, [instruction text]) for each function of a cuobjdump -sass listing."""
    name, body = None, []
    for line in lines:
        found = FUNCTION.search(line)
        if found:
            if name:
                yield name, body
            name, body = found.group(1), []
            continue
        found = INSTRUCTION.match(line)
        if name and found:
            body.append(found.group(2).strip())
    if name:
        yield name, body


def wait_order(body):
    """[(wait index, loads before it)], the indexes of launch_dependents, and the loads in all."""
    loads = [i for i, text in enumerate(body) if "LDG" in text]
    waits = [(i, sum(1 for j in loads if j < i)) for i, text in enumerate(body) if "ACQBULK" in text]
    preexits = [i for i, text in enumerate(body) if "PREEXIT" in text]
    return waits, preexits, len(loads)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("sass", help="cuobjdump -sass output ('-' for stdin)")
    parser.add_argument("--kernel", default="", help="only kernels whose mangled name contains this")
    args = parser.parse_args()
    source = sys.stdin if args.sass == "-" else open(args.sass, encoding="utf-8", errors="replace")
    seen = set()
    for name, body in kernels(source):
        if args.kernel not in name or name in seen:
            continue
        seen.add(name)  # a fat binary lists each kernel once an architecture
        waits, preexits, n_loads = wait_order(body)
        if not waits:
            continue
        shown = ", ".join(f"@{i}: {before} loads before" for i, before in waits)
        dependents = ", ".join(f"@{i}" for i in preexits)
        print(f"{short_name(name)[:100]}\n    waits {shown}; launch_dependents {dependents}; {n_loads} loads in all")


if __name__ == "__main__":
    main()
