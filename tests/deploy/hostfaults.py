"""Faults a test inflicts on the fleet's hosts: TCP counted at the hosts, silent hosts,
sshd killed or frozen with every session it serves."""
import os
import select
import signal
import socket
import threading
from pathlib import Path


def descendants(pid):
    """Every process below `pid` (children, grandchildren, ...), read from /proc."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, todo = [], [pid]
    while todo:
        parent = todo.pop()
        children = [child for child, ppid in parents.items() if ppid == parent]
        found += children
        todo += children
    return found


def signal_sshd(server, signum, with_listener=True):
    """Send `signum` to the sshd sessions of `server` (and its listener)."""
    pids = descendants(server.proc.pid)
    targets = [pid for pid in pids if _is_sshd(pid)]
    if with_listener:
        targets.append(server.proc.pid)
    for pid in targets:
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass
    return targets


def _is_sshd(pid):
    try:
        return Path(f"/proc/{pid}/comm").read_text(encoding="ascii").strip() == "sshd"
    except OSError:
        return False


def resume(pids):
    """SIGCONT every pid (those a test froze)."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGCONT)
        except ProcessLookupError:
            pass


class Silent:  # pylint: disable=too-few-public-methods
    """A loopback port that accepts TCP connections and never sends a byte."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.held = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                self.held.append(self.sock.accept()[0])
            except OSError:
                return

    def close(self):
        """Stop listening, drop every connection."""
        self.sock.close()
        for conn in self.held:
            conn.close()


class CountingProxy:  # pylint: disable=too-few-public-methods
    """TCP forwarders in front of sshd ports, counting the connections open at once
    across all of them: what the hosts see."""

    def __init__(self, ports):
        self.lock, self.open, self.most, self.total = threading.Lock(), 0, 0, 0
        self.listeners, self.ports, self.clients = [], {}, {}
        for port in ports:
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sock.listen(64)
            self.listeners.append(sock)
            self.ports[port] = sock.getsockname()[1]
            threading.Thread(target=self._accept, args=(sock, port), daemon=True).start()

    def _accept(self, sock, port):
        while True:
            try:
                client = sock.accept()[0]
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", port))
            done = threading.Event()
            with self.lock:
                self._settle()
                self.clients[client] = done
                self.open += 1
                self.total += 1
                self.most = max(self.most, self.open)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b, done), daemon=True).start()

    def _pipe(self, source, sink, done):
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        for sock in (source, sink):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        with self.lock:  # the first of the two directions to end closes the count
            self._closed(source if source in self.clients else sink, done)

    def _closed(self, client, done):
        if not done.is_set():
            done.set()
            self.open -= 1
        self.clients.pop(client, None)

    def _settle(self):
        """Count as closed the connections whose client already hung up (its FIN is in):
        the piping threads may not have seen it yet, the host has."""
        for client, done in list(self.clients.items()):
            try:
                readable = select.select([client], [], [], 0)[0]
                if readable and client.recv(1, socket.MSG_PEEK) == b"":
                    self._closed(client, done)
            except OSError:
                self._closed(client, done)

    def close(self):
        """Stop accepting."""
        for sock in self.listeners:
            sock.close()
