"""Writing result files so that a run killed at any moment leaves either the
old file or the new one, never a torn one."""
from __future__ import annotations

import os
from typing import Callable, Union


def atomic_write(path: str, data: Union[str, bytes, Callable]) -> None:
    """Writes ``data`` (text, bytes, or a function that writes into a binary
    file object) to ``path`` through a temporary file that is fsynced and
    then renamed over it."""
    tmp = f"{path}.tmp"
    with open(tmp, "wb") as f:
        if callable(data):
            data(f)
        else:
            f.write(data.encode() if isinstance(data, str) else data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
