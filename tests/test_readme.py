"""The README's Python examples run as written (with a smaller dataset and one epoch)."""
import re
from pathlib import Path

import numpy as np

README = Path(__file__).resolve().parents[1] / "README.md"


def _python_blocks():
    return re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


def _block(marker):
    """The README's Python block containing ``marker``."""
    found = [b for b in _python_blocks() if marker in b]
    assert len(found) == 1, marker
    return found[0]


def test_readme_keras_example_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = _block("nc.Sequential").replace("n=4000", "n=600").replace("epochs=4", "epochs=1")
    ns = {}
    exec(compile(code, "README.md", "exec"), ns)
    assert len(ns["history"].history["loss"]) == 1 and (tmp_path / "m.h5").exists()
    assert ns["model"].predict(ns["x_test"][:3]).shape == (3, 10)


def test_readme_training_example_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = _block("from numbacnn.train import fit, evaluate")
    assert "fit(" in code and "save_model" in code
    code = code.replace("n=4000", "n=800").replace("epochs=3", "epochs=1").replace("total_epochs=3", "total_epochs=1")
    ns = {}
    exec(compile(code, "README.md", "exec"), ns)
    assert len(ns["history"]) == 1 and 0.0 <= ns["acc"] <= 1.0
    assert ns["probs"].shape == (len(ns["y_te"]), 10)
    w1, w2 = ns["model"].get_weights(), ns["model2"].get_weights()
    assert all(np.array_equal(w1[k][p], w2[k][p]) for k in w1 for p in w1[k])


def test_readme_graph_example_runs():
    ns = {}
    exec(compile(_block('Model("tiny_resnet"'), "README.md", "exec"), ns)
    m = ns["m"]
    x = np.random.default_rng(0).random((2, 3, 32, 32), dtype=np.float32)
    assert m.forward(x).shape == (2, 10)
    assert m.to_config()["nodes"][-1]["name"] == "fc"


def test_readme_kernel_example_names_exist():
    from numbacnn.backends import get_backend
    be = get_backend("cpu")
    text = README.read_text()
    for name in set(re.findall(r"`(\w+_(?:forward|backward|update))\(", text)) | set(re.findall(r"be\.(\w+)\(", text)):
        assert callable(getattr(be, name, None)), f"README names be.{name}, which the backend lacks"
