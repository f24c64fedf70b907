"""The instruction mix of a compiled kernel's hot loop, read from its x86 assembly (``inspect_asm``).

``hot_loop(asm)`` finds the innermost loops (a basic block that ends by jumping back to its own label) and
returns the one with the most fused multiply-adds, counted by kind: what the blocked convolutions' tests
assert (full-width FMAs, no spills) and what ``benchmarks/bench_layers.py`` prints beside each shape.
"""
from __future__ import annotations

import re

__all__ = []     # a tool for tests and benchmarks, not a kernel

_LABEL = re.compile(r"^(\.?L[\w$.]+):")
_JUMP = re.compile(r"^\s*j[a-z]+\s+(\.?L[\w$.]+)\s*$")


def _loops(asm: str):
    """[(label, [instruction lines])] of every single-block loop."""
    found, label, body = [], None, []
    for line in asm.splitlines():
        m = _LABEL.match(line)
        if m:
            label, body = m.group(1), []
            continue
        text = line.split("#")[0].strip()
        if not text or text.startswith("."):
            continue
        body.append(text)
        j = _JUMP.match(line.split("#")[0])
        if j and label is not None and j.group(1) == label:
            found.append((label, list(body)))
    return found


def mix(lines) -> dict:
    """Counts of one loop's instructions by kind (vector width from the FMAs' registers)."""
    fma = [t for t in lines if t.startswith("vfmadd") or t.startswith("vfnmadd")]
    regs = {r for t in fma for r in re.findall(r"%([xyz]mm)\d+", t)}
    return {
        "instructions": len(lines),
        "fma": len(fma),
        "fma_width": {"zmm": 16, "ymm": 8, "xmm": 4}.get(max(regs, default=""), 0) if len(regs) <= 1 else 0,
        "fma_memory_operand": sum("(" in t for t in fma),
        "broadcasts": sum(t.startswith("vbroadcastss") for t in lines),
        "vector_loads": sum(bool(re.match(r"vmov[au]ps\s+-?\w*\(", t)) for t in lines),
        "vector_stores": sum(bool(re.match(r"vmov[au]ps\s+%[xyz]mm\d+,\s*-?\w*\(", t)) for t in lines),
        "stack": sum("(%rsp)" in t for t in lines),     # spills and reloads
        "scalar": sum(not t.startswith("v") for t in lines),
    }


def hot_loop(asm: str) -> dict:
    """``mix`` of the innermost loop with the most FMAs (an empty mix where there is none), and its label."""
    loops = _loops(asm)
    if not loops:
        return dict(mix([]), label=None)
    label, lines = max(loops, key=lambda lb: (sum(t.startswith("vfmadd") for t in lb[1]), len(lb[1])))
    return dict(mix(lines), label=label)


def describe(m: dict) -> str:
    """``28 FMA zmm, 2 loads + 14 broadcasts, 4 other, 0 stack`` for a benchmark table."""
    width = {16: "zmm", 8: "ymm", 4: "xmm"}.get(m["fma_width"], "mixed")
    return (f"{m['fma']} FMA {width}, {m['vector_loads']} loads + {m['broadcasts']} broadcasts, "
            f"{m['instructions'] - m['fma'] - m['vector_loads'] - m['broadcasts']} other, {m['stack']} stack")
