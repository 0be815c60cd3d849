#!/usr/bin/env python3
"""check-layers: which lib/ file calls which, from the object files themselves, and no cycles.

For every build/lib/X.o, `nm` gives the symbols X defines and the ones it leaves undefined; an
undefined symbol that another object defines is a call (or a use of data) from X.c to that file.
A cycle in that graph (X calls Y, Y calls X, directly or through others) fails the check, each
named on one line: "cycle: a.c -> b.c -> a.c". Exit status 0 when there is none, 1 otherwise.

usage: scripts/check-layers.py [--order] OBJECT...   (the Makefile passes $(LIB_OBJ))
  --order  also print the files bottom to top, each with the files it calls
"""
import os
import subprocess
import sys

def symbols(obj):
    """(defined, undefined) global symbols of one object file."""
    out = subprocess.run(["nm", "--defined-only", "-g", obj], capture_output=True, text=True, check=True).stdout
    defined = {line.split()[-1] for line in out.splitlines() if len(line.split()) == 3}
    out = subprocess.run(["nm", "--undefined-only", "-g", obj], capture_output=True, text=True, check=True).stdout
    undefined = {line.split()[-1] for line in out.splitlines() if line.split()}
    return defined, undefined


def cycles(graph):
    """The strongly connected components of more than one file (Tarjan): the knots of files that
    reach each other through calls."""
    index, low, stack, on, comps, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                comps.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return comps


def cycle_through(graph, comp):
    """A shortest cycle from the first file of comp back to it, and the files of comp it misses."""
    start, members = comp[0], set(comp)
    prev, frontier = {}, [start]
    while frontier and start not in prev:
        nxt = []
        for v in frontier:
            for w in sorted(graph[v] & members):
                if w not in prev:
                    prev[w] = v
                    nxt.append(w)
        frontier = nxt
    walk, v = [start], prev[start]
    while v != start:
        walk.append(v)
        v = prev[v]
    walk.append(start)
    walk.reverse()
    return walk, sorted(members - set(walk))


def main():
    args = sys.argv[1:]
    order = "--order" in args
    objs = sorted(a for a in args if a != "--order")
    if not objs:
        print("usage: scripts/check-layers.py [--order] OBJECT...", file=sys.stderr)
        return 2
    defs, undefs, owner = {}, {}, {}
    for o in objs:
        name = os.path.basename(o)[:-2] + ".c"
        defs[name], undefs[name] = symbols(o)
        for s in defs[name]:
            owner[s] = name
    graph = {f: {owner[s] for s in undefs[f] if s in owner and owner[s] != f} for f in defs}
    found = cycles(graph)
    for comp in found:
        walk, rest = cycle_through(graph, comp)
        more = f" (and {', '.join(rest)} in the same knot)" if rest else ""
        print(f"check-layers: cycle: {' -> '.join(walk)}{more}")
    if not found:
        print(f"check-layers: {len(defs)} files, no cycle")
        if order:  # each file after everything it calls
            done = []
            while len(done) < len(graph):
                for f in sorted(graph):
                    if f not in done and graph[f] <= set(done):
                        done.append(f)
                        print(f"  {f}: {' '.join(sorted(graph[f]))}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
