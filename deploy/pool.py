"""At most `limit` SSH connections open at once, each reused while it stays open.

A fleet no larger than the limit keeps one connection per host for the whole deploy. A
larger one is walked in bounded waves: before a new connection opens, an idle one is
closed (the least recently used), so the hosts never see more than `limit` at once.
"""
import threading
from collections import OrderedDict
from contextlib import contextmanager


class Pool:
    """Open connections by host address; `opener(host)` opens one (or raises)."""

    def __init__(self, opener, limit):
        self.opener, self.limit = opener, limit
        self.idle = OrderedDict()  # address -> open connection, least recently used first
        self.busy = 0
        self.changed = threading.Condition()

    @contextmanager
    def use(self, host):
        """An open connection to `host` for the block (opened if need be)."""
        conn, stale = self._claim(host.address)
        try:
            for old in stale:
                old.close()
            if conn is not None and not getattr(conn, "alive", True):
                conn.close()  # died while idle (a reset, a long pause): open a new one
                conn = None
            if conn is None:
                conn = self.opener(host)
            yield conn
        finally:
            self._give_back(host.address, conn)

    def _claim(self, address):
        """Take `address`'s idle connection, or a slot for a new one (closing idle ones)."""
        stale = []
        with self.changed:
            conn = self.idle.pop(address, None)
            while conn is None and self.busy + len(self.idle) >= self.limit:
                if self.idle:
                    stale.append(self.idle.popitem(last=False)[1])
                else:
                    self.changed.wait()
            self.busy += 1
        return conn, stale

    def _give_back(self, address, conn):
        with self.changed:
            self.busy -= 1
            if conn is not None and not getattr(conn, "broken", None):
                self.idle[address] = conn
                conn = None
            self.changed.notify_all()
        if conn is not None:
            conn.close()

    def close(self):
        """Close every idle connection (the ones in use are closed by their users)."""
        with self.changed:
            conns, self.idle = list(self.idle.values()), OrderedDict()
        for conn in conns:
            conn.close()
