"""Explicit SIMD registers for Numba kernels: a vector type and the register-tile operations of the blocked
convolutions (``blocked.py``), written as Numba intrinsics that emit LLVM vector IR directly.

A *tile* is a nested tuple ``acc[j][t]`` of ``OCB x TW`` vectors of ``V`` float32 lanes (``V`` = 8 or 16: one
ymm or zmm register each): output pixel ``t`` of a row, output channels ``j*V .. j*V + V - 1`` of a block of
``OCB`` channel vectors.  The tuple is an SSA value, so LLVM keeps it in registers across the reduction loops
written in Numba around these operations, and ``tile_fma`` compiles to one weight-vector load per ``j``, one
broadcast per ``t`` and ``OCB x TW`` fused multiply-adds (``vfmadd231ps``) for each of the input lanes it is
given -- the micro-kernel of oneDNN's direct convolutions, here generated from the tile's type.

Arrays are 1-D C-contiguous float32; indices are element offsets (no bounds checks: the callers' plans
guarantee them); vector loads and stores are unaligned.
"""
from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, models, register_model

__all__ = []     # no public kernels: the building blocks of blocked.py


class F32x(types.Type):
    """A vector of ``n`` float32 lanes (an LLVM ``<n x float>``)."""

    def __init__(self, n):
        self.n = int(n)
        super().__init__(name=f"f32x{self.n}")


@register_model(F32x)
class _F32xModel(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        super().__init__(dmm, fe_type, ir.VectorType(ir.FloatType(), fe_type.n))


def _literal(v):
    return v.literal_value if isinstance(v, types.IntegerLiteral) else None


def _data(context, builder, aryty, ary):
    return context.make_array(aryty)(context, builder, ary).data


def _vec_at(builder, base, offset, n):
    """A ``<n x float>*`` at element ``offset`` of float* ``base``."""
    return builder.bitcast(builder.gep(base, [offset]), ir.PointerType(ir.VectorType(ir.FloatType(), n)))


def _offset(builder, start, step, k):
    return builder.add(start, builder.mul(step, ir.Constant(step.type, k))) if k else start


def _fma(builder, a, b, c):
    vt = a.type
    fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vt, [vt, vt, vt]), f"llvm.fma.v{vt.count}f32")
    return builder.call(fn, [a, b, c])


def _broadcast(builder, scalar, n):
    vt = ir.VectorType(ir.FloatType(), n)
    v = builder.insert_element(ir.Constant(vt, ir.Undefined), scalar, ir.Constant(ir.IntType(32), 0))
    return builder.shuffle_vector(v, ir.Constant(vt, ir.Undefined), ir.Constant(ir.VectorType(ir.IntType(32), n),
                                                                              [0] * n))


def _tile_type(V, TW, OCB):
    return types.UniTuple(types.UniTuple(F32x(V), TW), OCB)


def _pack(context, builder, tty, rows):
    """The nested tuple value of type ``tty`` holding ``rows[j][t]``."""
    out = ir.Constant(context.get_value_type(tty), ir.Undefined)
    for j, row in enumerate(rows):
        r = ir.Constant(context.get_value_type(tty.dtype), ir.Undefined)
        for t, v in enumerate(row):
            r = builder.insert_value(r, v, t)
        out = builder.insert_value(out, r, j)
    return out


def _unpack(builder, tty, value):
    rows = [builder.extract_value(value, j) for j in range(tty.count)]
    return [[builder.extract_value(r, t) for t in range(tty.dtype.count)] for r in rows]


def _shape(acc):
    return acc.dtype.dtype.n, acc.dtype.count, acc.count      # V, TW, OCB


@intrinsic
def tile_load(typingctx, a, start, tstep, jstep, V, TW, OCB):
    """The tile acc[j][t] = a[start + t*tstep + j*jstep : + V]; V, TW, OCB compile-time ints (tstep 0: the
    same vector in every t, e.g. a bias)."""
    v, tw, ocb = _literal(V), _literal(TW), _literal(OCB)
    if None in (v, tw, ocb):
        return None
    tty = _tile_type(v, tw, ocb)

    def codegen(context, builder, sig, args):
        base = _data(context, builder, sig.args[0], args[0])
        s, ts, js = args[1], args[2], args[3]
        rows = [[builder.load(_vec_at(builder, base, _offset(builder, _offset(builder, s, ts, t), js, j), v),
                              align=4) for t in range(tw)] for j in range(ocb)]
        return _pack(context, builder, tty, rows)
    return tty(a, start, tstep, jstep, V, TW, OCB), codegen


@intrinsic
def tile_zero(typingctx, V, TW, OCB):
    """A tile of zeros."""
    v, tw, ocb = _literal(V), _literal(TW), _literal(OCB)
    if None in (v, tw, ocb):
        return None
    tty = _tile_type(v, tw, ocb)

    def codegen(context, builder, sig, args):
        zero = ir.Constant(ir.VectorType(ir.FloatType(), v), [0.0] * v)
        return _pack(context, builder, tty, [[zero] * tw for _ in range(ocb)])
    return tty(V, TW, OCB), codegen


@intrinsic
def tile_fma(typingctx, acc, x, xi, xstep, w, wi, wstep, L):
    """For each of ``L`` (a compile-time int) input lanes i: acc[j][t] += x[xi + i + t*xstep] * w[wi + i*V +
    j*wstep : + V] (broadcast one input, multiply-add a weight vector), unrolled: one straight block of
    L x OCB weight loads, L x TW broadcasts and L x OCB x TW fused multiply-adds."""
    v, tw, ocb = _shape(acc)
    lanes = _literal(L)
    if lanes is None:
        return None

    def codegen(context, builder, sig, args):
        tile, xs, x0, xd, ws, w0, wd, _ = args
        xp = _data(context, builder, sig.args[1], xs)
        wp = _data(context, builder, sig.args[4], ws)
        rows = _unpack(builder, sig.args[0], tile)
        for i in range(lanes):
            wi = _offset(builder, w0, ir.Constant(w0.type, v), i)
            wv = [builder.load(_vec_at(builder, wp, _offset(builder, wi, wd, j), v), align=4) for j in range(ocb)]
            xi = _offset(builder, x0, ir.Constant(x0.type, 1), i)
            for t in range(tw):
                xb = _broadcast(builder, builder.load(builder.gep(xp, [_offset(builder, xi, xd, t)]), align=4), v)
                for j in range(ocb):
                    rows[j][t] = _fma(builder, xb, wv[j], rows[j][t])
        return _pack(context, builder, sig.args[0], rows)
    return acc(acc, x, xi, xstep, w, wi, wstep, L), codegen


@intrinsic
def tile_relu(typingctx, acc):
    """0 where acc < 0, else acc, lane by lane (as the ReLU kernel: NaN and -0.0 pass through)."""
    v, tw, ocb = _shape(acc)

    def codegen(context, builder, sig, args):
        zero = ir.Constant(ir.VectorType(ir.FloatType(), v), [0.0] * v)
        rows = _unpack(builder, sig.args[0], args[0])
        rows = [[builder.select(builder.fcmp_ordered("<", e, zero), zero, e) for e in row] for row in rows]
        return _pack(context, builder, sig.args[0], rows)
    return acc(acc), codegen


@intrinsic
def tile_store(typingctx, a, start, tstep, jstep, acc):
    """a[start + t*tstep + j*jstep : + V] = acc[j][t]."""
    v, tw, ocb = _shape(acc)

    def codegen(context, builder, sig, args):
        base = _data(context, builder, sig.args[0], args[0])
        s, ts, js = args[1], args[2], args[3]
        rows = _unpack(builder, sig.args[4], args[4])
        for j in range(ocb):
            for t in range(tw):
                builder.store(rows[j][t], _vec_at(builder, base, _offset(builder, _offset(builder, s, ts, t), js, j),
                                                  v), align=4)
        return context.get_dummy_value()
    return types.none(a, start, tstep, jstep, acc), codegen


@intrinsic
def tile_fma_outer(typingctx, acc, x, xi, jstep, tstep, w, wi):
    """acc[j][t] += x[xi + j*jstep + t*tstep] * w[wi : + V] (ONE vector load, a broadcast per accumulator: the
    outer product of the weight gradient's register tile, input values times an output-gradient vector)."""
    v, tw, ocb = _shape(acc)

    def codegen(context, builder, sig, args):
        tile, xs, x0, js, ts, ws, w0 = args
        xp = _data(context, builder, sig.args[1], xs)
        wv = builder.load(_vec_at(builder, _data(context, builder, sig.args[5], ws), w0, v), align=4)
        rows = _unpack(builder, sig.args[0], tile)
        for j in range(ocb):
            for t in range(tw):
                xb = _broadcast(builder, builder.load(builder.gep(xp, [_offset(builder, _offset(builder, x0, js, j),
                                                                                ts, t)]), align=4), v)
                rows[j][t] = _fma(builder, xb, wv, rows[j][t])
        return _pack(context, builder, sig.args[0], rows)
    return acc(acc, x, xi, jstep, tstep, w, wi), codegen


@intrinsic
def tile_affine(typingctx, acc, s, si, b, bi):
    """acc[j][t] = acc[j][t] * s[si + t*V : + V] + b[bi + t*V : + V] (one fused multiply-add each: a scale and a
    bias a row of the tile, given as V copies each)."""
    v, tw, ocb = _shape(acc)

    def codegen(context, builder, sig, args):
        tile, ss, s0, bs, b0 = args
        sp = _data(context, builder, sig.args[1], ss)
        bp = _data(context, builder, sig.args[3], bs)
        step = ir.Constant(s0.type, v)
        sv = [builder.load(_vec_at(builder, sp, _offset(builder, s0, step, t), v), align=4) for t in range(tw)]
        bv = [builder.load(_vec_at(builder, bp, _offset(builder, b0, step, t), v), align=4) for t in range(tw)]
        rows = _unpack(builder, sig.args[0], tile)
        rows = [[_fma(builder, e, sv[t], bv[t]) for t, e in enumerate(row)] for row in rows]
        return _pack(context, builder, sig.args[0], rows)
    return acc(acc, s, si, b, bi), codegen
