"""One SSH round trip: a command on a new channel, watched for its deadline and keepalives.

When the deadline passes, or the host does not reply to an SSH keepalive within two
intervals, the watch closes the connection: every call blocked on the host wakes up, and
the round trip reports the reason instead of hanging the deploy. A TCP connection to a
stopped host (SIGSTOP, a hung kernel, a dead NAT entry) stays "up" for hours otherwise.
"""
import threading
import time


def exchange(transport, command, stdin, on_line, watch,  # pylint: disable=R0913,R0917
             split=False):
    """One command on a new channel: (exit code, output), or with `split` (exit code,
    stdout, stderr) read as two streams (on_line then sees stdout's lines only)."""
    channel = transport.open_session()
    try:
        channel.set_combine_stderr(not split)
        channel.exec_command(command)
        sender = threading.Thread(target=_send, args=(channel, stdin), daemon=True)
        sender.start()
        errors = []
        reader = threading.Thread(target=_read_quietly,
                                  args=(channel.recv_stderr, errors, watch),
                                  daemon=True)
        if split:
            reader.start()
        output = _read(channel.recv, [], watch, on_line)
        sender.join()
        if split:
            reader.join()
        code = channel.recv_exit_status()
    finally:
        channel.close()
    if split:
        return code, output, b"".join(errors).decode("utf-8", "replace")
    return code, output


def _read(recv, chunks, watch, on_line=None):
    """Read one stream to its end into `chunks`; its text. on_line sees each line."""
    pending = b""
    while True:
        data = recv(65536)
        if not data:
            break
        watch.heard = time.monotonic()
        chunks.append(data)
        if on_line:
            *lines, pending = (pending + data).split(b"\n")
            for line in lines:
                on_line(line.decode("utf-8", "replace"))
    return b"".join(chunks).decode("utf-8", "replace")


def _read_quietly(recv, chunks, watch):
    """The stderr reader's thread: a closed channel ends it (the stdout reader says why)."""
    try:
        _read(recv, chunks, watch)
    except (OSError, EOFError):
        pass


def _send(channel, data):
    try:
        if data:
            channel.sendall(data)
        channel.shutdown_write()
    except (OSError, EOFError):
        pass  # the channel closed first: the exchange reports why


class Watch:  # pylint: disable=too-few-public-methods
    """For one round trip: close the connection at the deadline, or when the host does
    not reply to an SSH keepalive within two intervals while the command is silent."""

    def __init__(self, transport, limit, interval):
        self.transport, self.limit, self.interval = transport, limit, interval
        self.heard, self.reason = time.monotonic(), None
        self.lock, self.done = threading.Lock(), threading.Event()
        threading.Thread(target=self._watch, daemon=True).start()

    def _watch(self):
        deadline = time.monotonic() + self.limit
        while not self.done.wait(max(0.0, min(self.interval, deadline - time.monotonic()))):
            now = time.monotonic()
            if now < deadline and (now - self.heard < self.interval or _answers(
                    self.transport, min(2 * self.interval, deadline - now))):
                continue
            if self.done.is_set():
                return
            if time.monotonic() >= deadline - 0.05:  # the probe waited until the deadline
                self._give_up(f"no result within {self.limit:g}s (ssh.command_timeout)")
            elif not self.transport.is_active():
                self._give_up("the connection was lost")
            else:
                self._give_up(f"the host stopped answering: no reply to an SSH keepalive "
                              f"within {2 * self.interval:g}s (ssh.keepalive is "
                              f"{self.interval:g}s)")
            return

    def _give_up(self, reason):
        with self.lock:
            if self.done.is_set():
                return
            self.reason = reason
        self.transport.close()  # wakes every call blocked on the host

    def finish(self):
        """The round trip ended: stop watching; the reason it was given up, if it was."""
        with self.lock:
            self.done.set()
            return self.reason


def _answers(transport, wait):
    """Whether the host replies to a keepalive (a global request) within `wait` seconds."""
    replied = threading.Event()

    def ask():
        transport.global_request("keepalive@openssh.com", wait=True)
        replied.set()
    threading.Thread(target=ask, daemon=True).start()
    return replied.wait(wait) and transport.is_active()
