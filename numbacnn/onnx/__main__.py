"""``python -m numbacnn.onnx``: the ONNX operators the importer supports, from its own tables (the README's list)."""
from .importer import MAX_OPSET, MIN_OPSET, supported_ops_text

if __name__ == "__main__":
    print(f"ONNX operators numbacnn imports (default domain, opsets {MIN_OPSET}-{MAX_OPSET}):")
    print(supported_ops_text())
