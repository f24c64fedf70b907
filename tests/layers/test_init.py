"""Initialisers: fan-in/fan-out from OIHW and (out, in) shapes, scales, seeding."""
from __future__ import annotations

import numpy as np
import pytest

from numbacnn import init


def test_fans():
    assert init.fans((64, 32, 3, 3)) == (32 * 9, 64 * 9)
    assert init.fans((10, 400)) == (400, 10)
    with pytest.raises(ValueError, match="shape"):
        init.fans((5,))


@pytest.mark.parametrize("name, shape, std", [
    ("he_normal", (128, 64, 3, 3), np.sqrt(2 / (64 * 9))),
    ("he_uniform", (128, 64, 3, 3), np.sqrt(6 / (64 * 9)) / np.sqrt(3)),
    ("glorot_normal", (300, 200), np.sqrt(2 / 500)),
    ("glorot_uniform", (300, 200), np.sqrt(6 / 500) / np.sqrt(3)),
])
def test_scale_and_seeding(name, shape, std):
    a = init.initialize(name, shape, np.random.default_rng(0))
    b = init.initialize(name, shape, np.random.default_rng(0))
    c = init.initialize(name, shape, np.random.default_rng(1))
    assert a.dtype == np.float32 and a.shape == shape
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert abs(a.mean()) < 0.02 * std * 10 and abs(a.std() - std) < 0.02 * std
    if name.endswith("uniform"):
        assert np.abs(a).max() <= std * np.sqrt(3)


def test_unknown_initializer():
    with pytest.raises(ValueError, match="lecun_normal"):
        init.initialize("lecun_normal", (2, 2), np.random.default_rng(0))
