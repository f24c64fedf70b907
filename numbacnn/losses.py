"""Loss functions: each returns ``(loss, dlogits)``.

``loss`` is the mean over the batch, a Python float or a value ``float()`` reads back from a GPU
(so a training step waits for the device once, after its update); ``dlogits`` is the
gradient of that mean with respect to the model output, a backend array of
the output's shape, ready for ``model.backward``.

    logits : (N, K) float32 backend array (the model output)
    labels : (N,)   integer backend array   (class indices in [0, K))

Softmax cross-entropy runs on the backend through its fused op (on a GPU
only the scalar loss comes back).  The regression losses (``mse``, ``mae``,
``huber``) have no backend kernel: they bring the small (N, K) output to the
host, which is fine for the regression heads they are meant for.

Every loss also hands back what the training loop needs without another
forward pass (the probabilities, or the raw outputs for regression), and says
whether it is a classification loss (``classification``: accuracy is counted).
"""
from __future__ import annotations

import numpy as np

from .registry import Registry

LOSSES = Registry("loss", normalize=lambda n: n.lower().replace("-", "_"),
                  aliases={"softmax_cross_entropy": "cross_entropy", "categorical_crossentropy": "cross_entropy",
                           "sparse_categorical_crossentropy": "cross_entropy", "mean_squared_error": "mse",
                           "mean_absolute_error": "mae", "l1": "mae", "smooth_l1": "huber"})


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
    #: losses of classes count correct predictions (accuracy); regression losses do not
    classification = True

    def __call__(self, backend, logits, labels, weight=1.0):
        """Return ``(loss, dlogits, probs)``; logits (N, K) (or (N, K, 1, 1)), labels (N,) int.

        ``weight`` scales the gradient (an auxiliary output's share of the total loss); the
        returned loss is unweighted, and on a GPU still on its way to the host: ``float(loss)``
        reads it (the training step does so once, after the update).
        """
        loss, probs = backend.softmax_cross_entropy_forward(_rows(logits), labels)
        dlogits = backend.softmax_cross_entropy_backward(probs, labels, weight)
        return loss, dlogits.reshape(logits.shape), probs

    def value(self, backend, logits, labels):
        """Only ``(loss, probs)``, for evaluation (no gradient)."""
        loss, probs = backend.softmax_cross_entropy_forward(_rows(logits), labels)
        return float(loss), probs


class _Regression:
    """A loss on float targets computed on the host (regression heads are small): subclasses give the
    element-wise loss and its derivative in the difference d = y - t; the loss is their mean.

    ``targets`` is (N, K) float (or (N,) for K = 1), or (N,) integer labels, which are one-hot encoded.
    """

    classification = False

    @staticmethod
    def _targets(y, targets):
        t = np.asarray(targets)
        if t.ndim == 1 and np.issubdtype(t.dtype, np.integer):
            onehot = np.zeros(y.shape, dtype=np.float32)
            onehot[np.arange(y.shape[0]), t] = 1.0
            return onehot
        if t.size != y.size:
            raise ValueError(f"regression targets shape {np.shape(targets)} does not match "
                             f"the output shape {y.shape}")
        return t.astype(np.float32).reshape(y.shape)

    def _diff(self, backend, outputs, targets):
        y = backend.to_host(outputs).astype(np.float32)
        return y, y - self._targets(y, backend.to_host(targets))

    def __call__(self, backend, outputs, targets, weight=1.0):
        """Return ``(loss, doutputs, outputs)``; ``weight`` scales the gradient (the loss is unweighted)."""
        _, d = self._diff(backend, outputs, targets)
        grad = (self.derivative(d) * np.float32(weight / d.size)).astype(np.float32)
        return float(np.mean(self.elementwise(d.astype(np.float64)))), backend.asarray(grad), outputs

    def value(self, backend, outputs, targets):
        _, d = self._diff(backend, outputs, targets)
        return float(np.mean(self.elementwise(d.astype(np.float64)))), outputs


@_register
class MeanSquaredError(_Regression):
    """mean((y - t)^2) over every element (PyTorch's MSELoss): dloss/dy = 2 (y - t) / (N * K)."""

    name = "mse"

    def elementwise(self, d):
        return d * d

    def derivative(self, d):
        return 2.0 * d


@_register
class MeanAbsoluteError(_Regression):
    """mean(|y - t|) (PyTorch's L1Loss): dloss/dy = sign(y - t) / (N * K), 0 where y = t."""

    name = "mae"

    def elementwise(self, d):
        return np.abs(d)

    def derivative(self, d):
        return np.sign(d)


@_register
class Huber(_Regression):
    """PyTorch's HuberLoss with delta 1: 0.5 d^2 where |d| <= 1, |d| - 0.5 elsewhere (mean over elements)."""

    name = "huber"
    delta = 1.0

    def elementwise(self, d):
        a = np.abs(d)
        return np.where(a <= self.delta, 0.5 * d * d, self.delta * (a - 0.5 * self.delta))

    def derivative(self, d):
        return np.clip(d, -self.delta, self.delta)


def softmax_cross_entropy(backend, logits, labels):
    """``(loss, dlogits)`` of the mean softmax cross-entropy (see ``SoftmaxCrossEntropy``)."""
    loss, d, _ = SoftmaxCrossEntropy()(backend, logits, labels)
    return float(loss), d


def mean_squared_error(backend, outputs, targets):
    """``(loss, doutputs)`` of the mean squared error (see ``MeanSquaredError``)."""
    loss, d, _ = MeanSquaredError()(backend, outputs, targets)
    return loss, d


__all__ = ["SoftmaxCrossEntropy", "MeanSquaredError", "MeanAbsoluteError", "Huber", "softmax_cross_entropy",
           "mean_squared_error", "get_loss", "LOSSES"]
