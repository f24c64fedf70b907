"""``check_op``: one helper that checks any op of any backend against the reference.

In the spirit of tinygrad's ``helper_test_op``: given host (numpy) inputs,
``check_op`` runs ``<op>_forward`` (or the in-place op itself, e.g.
``sgd_update``) on the backend under test and on the numpy reference backend,
compares every output and every input afterwards (so in-place updates such as
batch-norm running statistics and optimizer state are checked, and stray
writes into inputs are caught), then draws a random upstream gradient ``dy``
for the first output, runs ``<op>_backward`` on both, and compares EVERY
gradient the backend returns (``None`` where the reference returns ``None``).
Finally it checks the backward left ``dy`` and the inputs untouched.  Arrays
move through ``backend.asarray`` / ``backend.to_host`` only, so the same
helper drives the CPU backend and the CUDA backend (simulator or GPU).

How each op's backward is called (which forward outputs it takes, which
forward keyword arguments) is part of the op's declaration (``Op.grad`` in
``numbacnn/ops.py``), so one helper checks every op.

Tolerances, and why
-------------------
Both sides compute in float32 (machine epsilon ``EPS32`` = 1.19e-7), in
different orders (loop order, SIMD lanes, ``fastmath`` reassociation).

* Element-wise ops without a reduction (relu, dropout, sigmoid, ...): a few
  ulps of libm differences at most, so ``rtol = RTOL_ELEMENTWISE = 2e-6``
  (~16 ulps) and an absolute floor ``ATOL_ELEMENTWISE = 1e-6`` for values near
  zero (e.g. ``1 - y`` in sigmoid's backward when ``y`` rounds near 1).
* Reductions (conv, dense, pooling, batch norm, softmax, LRN): a float32 sum
  of ``L`` terms of magnitude ``s`` carries a rounding error that grows like
  ``eps * L * s`` for a running sum (each of the ``L`` additions rounds a
  partial sum of size up to ``~sqrt(L) * s`` with random-signed terms, and
  blocked or pairwise orders only do better).  ``tol(L, s)`` therefore gives
  ``atol = 4 * EPS32 * L * s`` and ``rtol = RTOL_REDUCTION = 1e-5``.  The
  factor 4 is measured, not guessed: the float32 reference itself stays
  within ``1.7 * EPS32 * L`` of a float64 computation on every conv geometry
  of the strategies (``test_reference.py::test_float32_reference_within_
  tolerance_model`` keeps that true at half of ``tol``), so two independent
  float32 implementations differ by at most twice that.  A real bug (a
  missing or extra tap, a wrong divisor, biased for unbiased variance:
  m / (m - 1) is 1e-3 off for m = 1024) is orders of magnitude larger.
  With unit-normal data the terms have ``s ~ 1``; means (pooling) divide by
  ``L`` so pass ``scale=1/L``; batch norm multiplies by ``invstd``, so its
  tests pass ``scale=max(invstd)`` (the op's condition number, not slack).

The reduction length ``L`` for each gradient is the number of terms summed
into one output cell: conv forward ``C/groups * KH * KW``, conv dx
``K/groups * KH * KW``, conv dw and db ``N * OH * OW``, dense forward and
dx/dw the contracted dimension, pooling the window (dx: the overlap).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from numbacnn.backends import get_backend
from numbacnn.ops import OPS

EPS32 = float(np.finfo(np.float32).eps)
RTOL_ELEMENTWISE = 2e-6
ATOL_ELEMENTWISE = 1e-6
RTOL_REDUCTION = 1e-5
ATOL_PER_TERM = 4 * EPS32


def tol(terms=1, scale=1.0):
    """Tolerances for an output that sums ``terms`` float32 terms of magnitude ``scale``."""
    return dict(rtol=RTOL_REDUCTION, atol=max(ATOL_PER_TERM * max(int(terms), 1) * float(scale), 1e-7))


ELEMENTWISE = dict(rtol=RTOL_ELEMENTWISE, atol=ATOL_ELEMENTWISE)
EXACT = dict(rtol=0.0, atol=0.0)


def _first(outs):
    return outs[0] if isinstance(outs, tuple) else outs


# ---------------------------------------------------------------- moving trees of arrays
def _is_array(a):
    return hasattr(a, "shape") and hasattr(a, "dtype") and not isinstance(a, np.generic)


def _to_backend(be, tree):
    """Fresh backend copies of every array in a (nested list/tuple) tree; other leaves pass through."""
    if isinstance(tree, (list, tuple)):
        return type(tree)(_to_backend(be, t) for t in tree)
    if isinstance(tree, np.ndarray):
        return be.asarray(tree.copy(), dtype=tree.dtype)
    return tree


def _to_host(be, tree):
    if isinstance(tree, (list, tuple)):
        return type(tree)(_to_host(be, t) for t in tree)
    if _is_array(tree):
        return np.array(be.to_host(tree), copy=True)
    if hasattr(tree, "__float__") and not isinstance(tree, (int, float, np.number)):
        return float(tree)   # a scalar the device reads back lazily (the CUDA loss)
    return tree


def _copy(tree):
    if isinstance(tree, (list, tuple)):
        return type(tree)(_copy(t) for t in tree)
    return tree.copy() if isinstance(tree, np.ndarray) else tree


def assert_tree_close(what, got, want, rtol, atol):
    """Compare two trees leaf by leaf: shapes, dtypes, then values (integers and bools exactly).

    ``atol`` may be a list with one entry per top-level element of a tuple result.
    """
    if isinstance(atol, (list, tuple)):
        assert isinstance(want, (list, tuple)) and len(atol) == len(want), f"{what}: one atol per result"
        assert isinstance(got, (list, tuple)) and len(got) == len(want), \
            f"{what}: got {len(got) if isinstance(got, (list, tuple)) else type(got).__name__} results, " \
            f"expected {len(want)}"
        rtols = rtol if isinstance(rtol, (list, tuple)) else [rtol] * len(want)
        for j, (g, w, rt, at) in enumerate(zip(got, want, rtols, atol)):
            assert_tree_close(f"{what}[{j}]", g, w, rt, at)
        return
    if isinstance(want, (list, tuple)):
        assert isinstance(got, (list, tuple)) and len(got) == len(want), \
            f"{what}: got {type(got).__name__} of {len(got) if isinstance(got, (list, tuple)) else '-'} " \
            f"results, expected {len(want)}"
        for j, (g, w) in enumerate(zip(got, want)):
            assert_tree_close(f"{what}[{j}]", g, w, rtol, atol)
        return
    if want is None:
        assert got is None, f"{what}: got {_describe(got)}, expected None"
        return
    if isinstance(want, (bool, int, np.integer, str)):
        assert not _is_array(got) and got == want, f"{what}: got {got!r}, expected {want!r}"
        return
    if isinstance(want, float):
        assert isinstance(got, float), f"{what}: expected a Python float, got {type(got).__name__}"
        np.testing.assert_allclose(got, want, rtol=rtol, atol=atol, err_msg=what)
        return
    assert _is_array(got), f"{what}: expected an array, got {type(got).__name__}"
    assert got.shape == want.shape, f"{what}: shape {got.shape}, expected {want.shape}"
    assert got.dtype == want.dtype, f"{what}: dtype {got.dtype}, expected {want.dtype}"
    assert got.flags.c_contiguous, f"{what}: result is not C-contiguous"
    if np.issubdtype(want.dtype, np.floating):
        np.testing.assert_allclose(got, want, rtol=rtol, atol=atol, err_msg=what)
    else:
        np.testing.assert_array_equal(got, want, err_msg=what)


# ---------------------------------------------------------------- the helper
@dataclass
class Checked:
    """What the backend produced (host copies), for extra assertions in a test."""

    outputs: object
    inputs: list
    grads: object = None
    dy: np.ndarray | None = None


def check_op(backend, op, inputs, kwargs=None, *, rtol=RTOL_ELEMENTWISE, atol=ATOL_ELEMENTWISE,
             grad_rtol=None, grad_atol=None, input_atol=None, seed=0, oracle="reference"):
    """Check ``op`` of ``backend`` against the ``oracle`` backend; returns a ``Checked``.

    backend   : a Backend or its name ("cpu", "cuda", "reference")
    op        : an op name of the public API without its direction ("conv2d", "batch_norm",
                "sgd_update"...); ``<op>_forward`` is called when it exists, else ``<op>``.
    inputs    : list of positional host inputs (numpy arrays, lists of arrays, shapes, None);
                each backend gets its own copies.
    kwargs    : keyword arguments of the forward (passed on to the backward where it takes them); arrays
                among them go to each backend as copies too.
    rtol/atol : forward tolerances (per output when atol is a list); see the module docstring.
    grad_rtol/grad_atol : backward tolerances (atol may be a list: one per gradient);
                default to the forward's.
    input_atol: tolerance for inputs updated in place (running stats, optimizer state);
                defaults to the forward's atol (its first entry when a list).
    seed      : seeds the upstream gradient dy ~ N(0, 1) float32.
    """
    be, ref = get_backend(backend), get_backend(oracle)
    kwargs = dict(kwargs or {})
    spec = OPS[op]
    name = spec.forward
    if input_atol is None:
        input_atol = atol[0] if isinstance(atol, (list, tuple)) else atol
    input_rtol = rtol[0] if isinstance(rtol, (list, tuple)) else rtol
    ctx = f"{op} on {be.name} with {kwargs}, inputs {[_describe(a) for a in inputs]}"

    # forward (and in-place updates)
    ref_in = _copy(list(inputs))
    be_in = _to_backend(be, list(inputs))
    ref_out = getattr(ref, name)(*ref_in, **kwargs)
    be_out = getattr(be, name)(*be_in, **{k: _to_backend(be, v) for k, v in kwargs.items()})
    be.synchronize()
    be_out_host = _to_host(be, be_out)
    assert_tree_close(f"{ctx}: forward", be_out_host, ref_out, rtol, atol)
    be_in_host = _to_host(be, be_in)
    assert_tree_close(f"{ctx}: inputs after forward", be_in_host, ref_in, input_rtol, input_atol)
    result = Checked(outputs=be_out_host, inputs=be_in_host)
    if spec.grad is None:
        return result

    # backward, from the same random upstream gradient on both sides
    dy = None
    if spec.upstream:
        y = _first(ref_out)
        dy = np.random.default_rng(seed).standard_normal(y.shape).astype(y.dtype)
    ref_args, ref_kw = spec.grad(dy, ref_in, ref_out, kwargs)
    be_dy = _to_backend(be, dy)
    be_args, be_kw = spec.grad(be_dy, be_in, be_out, kwargs)
    ref_grads = getattr(ref, f"{op}_backward")(*ref_args, **ref_kw)
    be_grads = getattr(be, f"{op}_backward")(*be_args, **be_kw)
    be.synchronize()
    result.grads, result.dy = _to_host(be, be_grads), dy
    assert_tree_close(f"{ctx}: backward (dy seed {seed})", result.grads, ref_grads,
                      rtol if grad_rtol is None else grad_rtol, atol if grad_atol is None else grad_atol)
    assert_tree_close(f"{ctx}: inputs after backward", _to_host(be, be_in), be_in_host, **EXACT)
    if dy is not None:
        assert_tree_close(f"{ctx}: dy after backward", _to_host(be, be_dy), dy, **EXACT)
    return result


def _describe(a):
    if isinstance(a, np.ndarray):
        return f"{a.dtype}{list(a.shape)}"
    if isinstance(a, (list, tuple)) and a and isinstance(a[0], np.ndarray):
        return [_describe(x) for x in a]
    return a
