"""ONNX import and export (needs the ``onnx`` extra: ``pip install 'numbacnn[onnx]'``).

    from numbacnn.onnx import import_onnx, export_onnx
    model = import_onnx("net.onnx", backend="cpu")   # a built Model with the ONNX weights
    export_onnx(model, "net_again.onnx")              # the lowest opset every layer needs (13 for most), checked

``python -m numbacnn.onnx`` lists the operators the importer takes; ``conformance`` runs the onnx
package's own test data through it; ``light`` gives its classic graphs seeded random weights.
"""
from .exporter import OnnxExportError, export_onnx
from .importer import OnnxImportError, import_onnx

__all__ = ["import_onnx", "export_onnx", "OnnxImportError", "OnnxExportError"]
