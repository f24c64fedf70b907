"""Loss functions: each returns ``(loss, dlogits)``.

``loss`` is a Python float (the mean over the batch); ``dlogits`` is the
gradient of that mean with respect to the model output, a backend array of
the output's shape, ready for ``model.backward``.

    logits : (N, K) float32 backend array (the model output)
    labels : (N,)   integer backend array   (class indices in [0, K))

Softmax cross-entropy runs on the backend through its fused op (on a GPU
only the scalar loss comes back).  Mean squared error has no backend kernel:
it brings the small (N, K) output to the host, which is fine for the
regression-style heads it is meant for.

Both loss classes also hand back what the training loop needs to count
correct predictions (``predictions``: the probabilities, or the raw outputs for
MSE) without another forward pass.
"""
from __future__ import annotations

import numpy as np

from .registry import Registry

LOSSES = Registry("loss", normalize=lambda n: n.lower().replace("-", "_"),
                  aliases={"softmax_cross_entropy": "cross_entropy", "categorical_crossentropy": "cross_entropy",
                           "sparse_categorical_crossentropy": "cross_entropy", "mean_squared_error": "mse"})


def _register(cls):
    return LOSSES.register(cls.name)(cls)


def _rows(a):
    """(N, ...) -> (N, K) view: a (N, C, 1, 1) output (an imported classifier's) is scored like (N, C)."""
    n = int(a.shape[0])
    return a if len(a.shape) == 2 else a.reshape(n, int(np.prod(a.shape[1:], dtype=np.int64)))


def get_loss(name_or_loss="cross_entropy"):
    """A loss by name (``cross_entropy`` | ``mse``), or the loss object itself."""
    if not isinstance(name_or_loss, str):
        return name_or_loss
    return LOSSES.lookup(name_or_loss)()


@_register
class SoftmaxCrossEntropy:
    """Mean cross-entropy of softmax(logits) against integer labels (PyTorch's CrossEntropyLoss).

    The model's last layer should produce raw logits (no softmax layer): the
    backend fuses softmax and log for stability.
    """

    name = "cross_entropy"

    def __call__(self, backend, logits, labels, weight=1.0):
        """Return ``(loss, dlogits, probs)``; logits (N, K) (or (N, K, 1, 1)), labels (N,) int.

        ``weight`` scales the gradient (an auxiliary output's share of the total loss); the
        returned loss is unweighted.
        """
        loss, probs = backend.softmax_cross_entropy_forward(_rows(logits), labels)
        dlogits = backend.softmax_cross_entropy_backward(probs, labels, weight)
        return float(loss), dlogits.reshape(logits.shape), probs

    def value(self, backend, logits, labels):
        """Only ``(loss, probs)``, for evaluation (no gradient)."""
        loss, probs = backend.softmax_cross_entropy_forward(_rows(logits), labels)
        return float(loss), probs


@_register
class MeanSquaredError:
    """mean((y - t)^2) over every element (PyTorch's MSELoss, reduction 'mean').

    ``targets`` is (N, K) float, or (N,) integer labels, which are one-hot
    encoded.  dlogits = 2 (y - t) / (N * K).
    """

    name = "mse"

    @staticmethod
    def _targets(y, targets):
        t = np.asarray(targets)
        if t.ndim == 1 and np.issubdtype(t.dtype, np.integer):
            onehot = np.zeros(y.shape, dtype=np.float32)
            onehot[np.arange(y.shape[0]), t] = 1.0
            return onehot
        t = t.astype(np.float32).reshape(y.shape) if t.size == y.size else None
        if t is None:
            raise ValueError(f"mse targets shape {np.shape(targets)} does not match the output shape {y.shape}")
        return t

    def _diff(self, backend, outputs, targets):
        y = backend.to_host(outputs).astype(np.float32)
        return y, y - self._targets(y, backend.to_host(targets))

    def __call__(self, backend, outputs, targets, weight=1.0):
        """Return ``(loss, doutputs, outputs)``; ``weight`` scales the gradient (the loss is unweighted)."""
        y, d = self._diff(backend, outputs, targets)
        loss = float(np.mean(d.astype(np.float64) ** 2))
        grad = (d * np.float32(2.0 * weight / d.size)).astype(np.float32)
        return loss, backend.asarray(grad), outputs

    def value(self, backend, outputs, targets):
        y, d = self._diff(backend, outputs, targets)
        return float(np.mean(d.astype(np.float64) ** 2)), outputs


def softmax_cross_entropy(backend, logits, labels):
    """``(loss, dlogits)`` of the mean softmax cross-entropy (see ``SoftmaxCrossEntropy``)."""
    loss, d, _ = SoftmaxCrossEntropy()(backend, logits, labels)
    return loss, d


def mean_squared_error(backend, outputs, targets):
    """``(loss, doutputs)`` of the mean squared error (see ``MeanSquaredError``)."""
    loss, d, _ = MeanSquaredError()(backend, outputs, targets)
    return loss, d


__all__ = ["SoftmaxCrossEntropy", "MeanSquaredError", "softmax_cross_entropy", "mean_squared_error",
           "get_loss", "LOSSES"]
