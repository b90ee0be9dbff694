"""SIGINT and SIGTERM during a rollout: asked to stop, not killed.

While the guard is on, the first signal sets a flag: the fleet runner starts no new host
work, lets the round trips in flight end (undoing a failed one), finishes every host and
gives the locks back; the deploy then exits 128 + the signal's number (130, 143). Further
signals only say that it is still finishing.
"""
import os
import signal
import threading
import time

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupt:
    """The stop flag, and a context manager installing the handlers (main thread only)."""

    def __init__(self):
        # A plain attribute, no lock: the handler runs in the main thread between any two
        # bytecodes, possibly while it holds a lock the handler would need.
        self.signum, self.saved = None, {}

    @property
    def requested(self):
        """Whether a signal asked the run to stop."""
        return self.signum is not None

    @property
    def exit_code(self):
        """128 + the signal's number."""
        return 128 + self.signum if self.signum else 0

    @property
    def name(self):
        """SIGINT or SIGTERM."""
        return signal.Signals(self.signum).name if self.signum else ""

    def request(self, signum, _frame=None):
        """The handler: note the first signal, tell the user (on stderr, taking no lock
        the interrupted thread may hold) what happens now."""
        if self.requested:
            _tell(f"{signal.Signals(signum).name} again: still finishing the hosts in "
                  "flight; their locks are given back when they end")
            return
        self.signum = signum
        _tell(f"{self.name}: stopping: no new host is started; the ones in flight finish "
              "(or go back), then every lock is given back")

    def wait(self, seconds):
        """Sleep, waking early (within 0.1 s) when a signal asks to stop; True if it did."""
        deadline = time.monotonic() + seconds
        while not self.requested and time.monotonic() < deadline:
            time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))
        return self.requested

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for signum in SIGNALS:
                self.saved[signum] = signal.signal(signum, self.request)
        return self

    def __exit__(self, *exc):
        for signum, handler in self.saved.items():
            signal.signal(signum, handler)
        self.saved = {}


def _tell(text):
    try:
        os.write(2, f"fabship: {text}\n".encode())
    except OSError:
        pass
