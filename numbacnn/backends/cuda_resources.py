"""What a kernel costs on the GPU, measured without one: registers, spills and the inner loop's instructions.

The kernels are compiled to PTX for a compute capability (``compile_ptx``), then assembled by NVIDIA's
``ptxas`` (``-v`` reports registers per thread and spill bytes) and disassembled by ``nvdisasm``
(SASS, the instructions the GPU runs).  The tools come with the ``cuda`` extra (the CUDA 13 wheels
``nvidia-cuda-nvcc`` and ``nvidia-cuda-nvdisasm``); ``tool(name)`` finds them there or on the PATH.

``inner_loop(sass)`` finds the innermost loop that does floating-point multiply-adds (the smallest
backward branch whose body holds an ``FFMA``) and counts its instructions: instructions per FMA is
the proxy for how close a convolution's inner loop gets to the FMA peak, and an integer division or
modulo there (a call to a division routine, ``I2F``/``MUFU.RCP`` reciprocal sequences) is flagged.
``tests/cuda/test_cuda_resources.py`` holds every hot kernel to a stated budget.
"""
from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

CC = (9, 0)


def tool(name: str) -> str | None:
    """Path of NVIDIA tool ``name`` (ptxas, nvdisasm, cuobjdump): the CUDA wheel's first, else the PATH's."""
    spec = importlib.util.find_spec("nvidia")
    for root in (spec.submodule_search_locations or []) if spec else []:
        for sub in ("cu13", "cuda_nvcc", "cuda_nvdisasm", "cuda_cuobjdump"):
            path = Path(root, sub, "bin", name)
            if path.is_file() and os.access(path, os.X_OK):
                return str(path)
    return shutil.which(name)


def type_codes() -> dict:
    """The numba types of the op table's PTX signature codes (``numbacnn/ops.py``'s docstring)."""
    from numba import boolean, float32, int32, int64, types, uint8, uint64
    return {"A1": float32[::1], "A2": float32[:, ::1], "A3": float32[:, :, ::1], "A4": float32[:, :, :, ::1],
            "F": float32, "I": int64, "B": boolean, "U8": uint8[::1], "u8": uint8, "u64": uint64,
            "L64": int64[::1], "L32": int32[::1], "LA2": int64[:, ::1], "LA4": int64[:, :, :, ::1],
            "T16": types.UniTuple(float32[::1], 16)}


def signatures(codes) -> list:
    """[tuple of numba types] of an op table entry's signature string (or list of them)."""
    types = type_codes()
    return [tuple(types[c] for c in sig.split()) for sig in (codes if isinstance(codes, list) else [codes])]


def declared_kernels() -> dict:
    """{kernel name: (kernel, [signatures])} of every kernel the op table declares."""
    import importlib
    import pkgutil

    from .. import ops
    from ..kernels import cuda as package
    objects = {}
    for info in pkgutil.iter_modules(package.__path__):
        objects.update(vars(importlib.import_module(f"{package.__name__}.{info.name}")))
    declared = dict(ops.CUDA_HELPERS)
    for op in ops.OPS.values():
        declared.update(op.cuda)
    return {name: (objects[name], signatures(codes)) for name, codes in declared.items()}


def compile_kernel_ptx(kernel, signature, cc=CC) -> str:
    """PTX of ``kernel`` (a ``@cuda.jit`` dispatcher) for one signature (a tuple of numba types)."""
    from numba import cuda
    ptx, _ = cuda.compile_ptx(kernel.py_func, signature, cc=cc)
    return ptx


@dataclass
class Usage:
    registers: int
    spill_stores: int
    spill_loads: int
    shared_bytes: int
    stack_bytes: int


_USED = re.compile(r"Used (\d+) registers")
_SPILL = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
_SMEM = re.compile(r"(\d+) bytes smem")


def assemble(ptx: str, cc=CC, out: str | None = None) -> str:
    """Run ``ptxas -v`` on ``ptx``; returns its report (stderr).  ``out``: where to write the cubin."""
    ptxas = tool("ptxas")
    if ptxas is None:
        raise FileNotFoundError("ptxas not found: pip install -e '.[cuda]' (the nvidia-cuda-nvcc wheel)")
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp, "k.ptx")
        src.write_text(ptx)
        cmd = [ptxas, f"-arch=sm_{cc[0]}{cc[1]}", "-v", str(src), "-o", out or str(Path(tmp, "k.cubin"))]
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if res.returncode:
        raise RuntimeError(f"ptxas failed: {res.stderr.strip()[:500]}")
    return res.stderr + res.stdout


def usage(ptx: str, cc=CC) -> Usage:
    """Registers per thread, spill bytes, shared memory and stack of the (one) kernel in ``ptx``."""
    report = assemble(ptx, cc)
    regs, spill, smem = _USED.search(report), _SPILL.search(report), _SMEM.search(report)
    if regs is None or spill is None:
        raise RuntimeError(f"unexpected ptxas report: {report[:500]}")
    return Usage(int(regs.group(1)), int(spill.group(2)), int(spill.group(3)),
                 int(smem.group(1)) if smem else 0, int(spill.group(1)))


def sass(ptx: str, cc=CC) -> list:
    """[(address, opcode line)] of the kernel's SASS (``nvdisasm`` of the ``ptxas`` cubin)."""
    nvdisasm = tool("nvdisasm")
    if nvdisasm is None:
        raise FileNotFoundError("nvdisasm not found: pip install -e '.[cuda]' (the nvidia-cuda-nvdisasm wheel)")
    with tempfile.TemporaryDirectory() as tmp:
        cubin = str(Path(tmp, "k.cubin"))
        assemble(ptx, cc, out=cubin)
        res = subprocess.run([nvdisasm, "-c", "-hex", cubin], capture_output=True, text=True, timeout=300)
    if res.returncode:
        raise RuntimeError(f"nvdisasm failed: {res.stderr.strip()[:500]}")
    out, labels, pending = [], {}, []
    for line in res.stdout.splitlines():
        label = re.match(r"\s*(\.L\w+):", line)
        if label:
            pending.append(label.group(1))
            continue
        m = re.match(r"\s*/\*([0-9a-f]{4,})\*/\s+(.*?);", line)
        if m:
            addr = int(m.group(1), 16)
            labels.update((name, addr) for name in pending)
            pending = []
            out.append((addr, m.group(2).strip()))
    # branch targets as addresses: `(.L_x_41) -> 0x4a80
    return [(a, re.sub(r"`\((\.L\w+)\)", lambda m: hex(labels.get(m.group(1), -1)), t)) for a, t in out]


_TARGET = re.compile(r"\b(?:BRA|BRX)\b.*?(0x[0-9a-f]+)")
_DIVISION = re.compile(r"\bCALL\b|\bI2F\b|\bMUFU\.RCP\b|\bI2F\.U32\.RP\b")


def _opcode(text: str) -> str:
    text = re.sub(r"^@!?U?P\w+\s+", "", text)      # predicate guard
    return text.split()[0] if text else ""


@dataclass
class Loop:
    start: int
    end: int
    instructions: int
    ffma: int
    divisions: list = field(default_factory=list)

    @property
    def per_fma(self) -> float:
        return self.instructions / self.ffma if self.ffma else float("inf")


def loops(code: list) -> list:
    """Every loop of ``code`` (a backward branch and the instructions from its target to it), smallest first."""
    found = []
    for addr, text in code:
        m = _TARGET.search(text)
        if m and int(m.group(1), 16) <= addr:
            start = int(m.group(1), 16)
            body = [t for a, t in code if start <= a <= addr]
            ops = [_opcode(t) for t in body]
            nops = sum(op == "NOP" for op in ops)
            found.append(Loop(start, addr, len(body) - nops, sum(op.startswith("FFMA") for op in ops),
                              [t for t in body if _DIVISION.search(t)]))
    return sorted(found, key=lambda lp: lp.end - lp.start)


def inner_loop(code: list) -> Loop | None:
    """The innermost loop with a floating-point multiply-add (None if there is none)."""
    return next((lp for lp in loops(code) if lp.ffma), None)
