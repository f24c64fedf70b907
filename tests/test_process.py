"""Process-wide defaults numbacnn sets when it is imported (``numbacnn/config.py``)."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

glibc = pytest.mark.skipif(not sys.platform.startswith("linux") or os.confstr("CS_GNU_LIBC_VERSION") is None,
                           reason="glibc's mallopt only")


def _kept(**env):
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    out = subprocess.run([sys.executable, "-c", "import numbacnn.config as c; print(c.MEMORY_KEPT)"],
                         env={**clean, **env}, capture_output=True, text=True, check=True)
    return out.stdout.strip()


@glibc
def test_freed_arrays_are_kept_for_the_next_step_unless_the_user_set_malloc():
    """glibc keeps allocations up to 64 MiB on its heap (no fresh zeroed pages every training step), except where
    the user chose glibc's thresholds through its own environment variables."""
    assert _kept() == "True"
    assert _kept(MALLOC_MMAP_THRESHOLD_="131072") == "False"
    assert _kept(MALLOC_TRIM_THRESHOLD_="131072") == "False"
