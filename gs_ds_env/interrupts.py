"""Ctrl-C, SIGTERM (a `timeout`, a `kill`) and SIGHUP (a closed terminal) are one thing to every task: they raise
`Interrupted`, so one clean-up path stops what runs (containers, a job, a kernel build's rollback) and the task
ends with one line and 128 + the signal's number."""

from __future__ import annotations

import contextlib
import signal
import threading

NAMES = {signal.SIGINT: "Ctrl-C", signal.SIGTERM: "SIGTERM", signal.SIGHUP: "SIGHUP"}


class Interrupted(KeyboardInterrupt):
    """A signal from NAMES arrived; `status` is what a run record says about it."""

    def __init__(self, status: str, signum: int = signal.SIGINT) -> None:
        super().__init__(status)
        self.status = status
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + int(self.signum)


@contextlib.contextmanager
def interruptible():
    """While inside, the signals raise Interrupted in the main thread; the yielded list holds those that came
    (a library may swallow the exception). Elsewhere than the main thread nothing can listen: a no-op."""
    received: list[signal.Signals] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    def on_signal(signum, frame):
        received.append(signal.Signals(signum))
        raise Interrupted(f"interrupted ({NAMES[received[0]]})", received[0])

    previous = {signum: signal.signal(signum, on_signal) for signum in NAMES}
    try:
        yield received
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
