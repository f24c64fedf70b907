"""The code base's budget (tinygrad keeps one): what keeps numbacnn small enough to read in an afternoon.

* No function outside ``numbacnn/kernels/`` is over ``MAX_FUNCTION_LINES``
  (kernels are hand-unrolled hot loops and may be longer).
* Outside ``numbacnn/layers/`` no code asks a layer for its class name
  (``type(x).__name__ == ...``, ``isinstance(x, Conv2D)``) or reads an
  underscore attribute of another object: what other modules need from a
  layer is public on the layer (``layers/base.py``).
* The backends have no one-line pass-through methods: the public kernel API
  is generated from the op table (``numbacnn/ops.py``).

The test prints the package's line count (``pytest -s tests/test_budget.py``).
"""
from __future__ import annotations

import ast
from pathlib import Path

from numbacnn.layers import LAYERS

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "numbacnn"
MAX_FUNCTION_LINES = 60


def _sources(*roots, exclude=()):
    for root in roots:
        for path in sorted(root.rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if not any(rel.startswith(e) for e in exclude):
                yield rel, ast.parse(path.read_text(), rel)


def long_functions(trees):
    return [f"{rel}:{n.lineno} {n.name} ({n.end_lineno - n.lineno + 1} lines)" for rel, tree in trees
            for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
            and n.end_lineno - n.lineno + 1 > MAX_FUNCTION_LINES]


def _is_class_name(node) -> bool:
    """``type(x).__name__`` or ``x.__class__.__name__`` of an object other than ``self``."""
    if not isinstance(node, ast.Attribute) or node.attr != "__name__":
        return False
    v = node.value
    if isinstance(v, ast.Call) and getattr(v.func, "id", None) == "type" and v.args:
        return ast.unparse(v.args[0]) != "self"
    return isinstance(v, ast.Attribute) and v.attr == "__class__" and ast.unparse(v.value) != "self"


def layer_knowledge(trees):
    """Class-name comparisons, isinstance checks on layer classes and foreign underscore attributes."""
    found = []
    for rel, tree in trees:
        for n in ast.walk(tree):
            if isinstance(n, ast.Compare) and any(_is_class_name(x) for x in (n.left, *n.comparators)):
                found.append(f"{rel}:{n.lineno} compares a class name: {ast.unparse(n)}")
            elif isinstance(n, ast.Call) and getattr(n.func, "id", None) == "isinstance" and len(n.args) == 2:
                names = {getattr(e, "id", getattr(e, "attr", None)) for e in ast.walk(n.args[1])}
                if names & set(LAYERS):
                    found.append(f"{rel}:{n.lineno} isinstance on a layer class: {ast.unparse(n)}")
            elif (isinstance(n, ast.Attribute) and n.attr.startswith("_") and not n.attr.startswith("__")
                  and not (isinstance(n.value, ast.Name) and n.value.id in ("self", "cls"))):
                found.append(f"{rel}:{n.lineno} reads another object's private {ast.unparse(n)}")
    return found


def pass_throughs(trees):
    """Backend methods whose whole body calls one kernel of ``self.k`` with the same arguments."""
    found = []
    for rel, tree in trees:
        for n in ast.walk(tree):
            if not isinstance(n, ast.FunctionDef) or len(n.body) != 1:
                continue
            stmt = n.body[0]
            call = stmt.value if isinstance(stmt, (ast.Return, ast.Expr)) else None
            func = getattr(call, "func", None)
            if isinstance(call, ast.Call) and isinstance(func, ast.Attribute) and ast.unparse(func.value) == "self.k":
                found.append(f"{rel}:{n.lineno} {n.name}")
    return found


def test_no_function_outside_the_kernels_is_over_the_budget():
    trees = list(_sources(PACKAGE, ROOT / "benchmarks", exclude=("numbacnn/kernels/",)))
    assert not long_functions(trees), "\n".join(long_functions(trees))


def test_only_layers_know_layer_internals():
    trees = list(_sources(PACKAGE, ROOT / "benchmarks", exclude=("numbacnn/layers/", "numbacnn/kernels/")))
    found = layer_knowledge(trees)
    assert not found, "\n".join(found)


def test_backends_have_no_pass_through_methods():
    found = pass_throughs(_sources(PACKAGE / "backends"))
    assert not found, "\n".join(found)


def test_the_checks_catch_what_they_look_for():
    """The budget checks themselves find a long function, a class-name test, a private read, a pass-through."""
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES))
    src = (f"def long():\n{body}\n"
           "def f(layer):\n    return type(layer).__name__ == 'Dropout' or isinstance(layer, Conv2D) or layer._k\n"
           "class B:\n    def relu_forward(self, x):\n        return self.k.relu_forward(x)\n")
    trees = [("example.py", ast.parse(src))]
    assert len(long_functions(trees)) == 1
    assert len(layer_knowledge(trees)) == 3
    assert len(pass_throughs(trees)) == 1


def test_package_line_count(capsys):
    counts = {rel: len((ROOT / rel).read_text().splitlines()) for rel, _ in _sources(PACKAGE)}
    kernels = sum(v for k, v in counts.items() if k.startswith("numbacnn/kernels/"))
    with capsys.disabled():
        print(f"\nnumbacnn: {sum(counts.values()):,} lines in {len(counts)} files "
              f"({kernels:,} in kernels/, {sum(counts.values()) - kernels:,} elsewhere)")
    assert counts
