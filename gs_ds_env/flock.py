"""One process at a time per resource (a staging key, a theme venv): an flock on a small file beside it.

The lock dies with its process, so a killed run never leaves a stale lock behind; the file only says who held it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path


@contextlib.contextmanager
def exclusive(lock_file: Path, what: str):
    """Hold `lock_file` for the block; when another process holds it, say so (with its pid) and wait."""
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with lock_file.open("a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "?"
            print(f"[lock] another process is {what} (pid {holder}); waiting for it to finish", flush=True)
            fcntl.flock(handle, fcntl.LOCK_EX)
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        try:
            yield
        finally:
            handle.seek(0)
            handle.truncate()
            fcntl.flock(handle, fcntl.LOCK_UN)
