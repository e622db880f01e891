"""The driver's listening socket: runners connect here with an HMAC handshake (the job's
connection key), and nothing another peer does can hold them up.

:func:`bind_listener` binds it (on a port of a range, for clusters); :class:`Acceptor`
accepts on a thread from the moment it is made, each handshake on its own thread with a
deadline (see its docstring and docs/architecture.md "Trust").
"""

import collections
import os
import socket
import struct
import threading
import time
from multiprocessing import AuthenticationError
from multiprocessing.connection import Listener

from . import protocol as P


class Acceptor:
    """Accepts runner connections on a thread from the moment it is made, so runners get in
    while the driver still reads its job; ``wake_r`` becomes readable when ``conns`` has
    new ones.

    The listener's port is no secret (it is in ``state.json``, and clusters use a known
    range), so nothing a peer does may hold up the others: each HMAC handshake runs on its
    own thread with a deadline of ``handshake_timeout`` seconds, after which its socket is
    shut; at most :data:`MAX_HANDSHAKES` run at once, and a new connection beyond that
    evicts the oldest (an honest handshake takes milliseconds). Garbage, a wrong key or
    silence drops that peer, logged (at most a line a second).
    """

    def __init__(self, listener, *, handshake_timeout=None):
        self.listener = listener
        self.authkey = getattr(listener, "job_authkey", None)
        self.handshake_timeout = handshake_timeout or HANDSHAKE_TIMEOUT
        self.conns = collections.deque()
        self.wake_r, self._wake_w = socket.socketpair()
        self.closed = False
        self.dropped = 0
        self._pending = {}  # connection -> deadline of its handshake; closed only once out
        self._lock = threading.Lock()
        self._last_note = 0.0
        threading.Thread(target=self._loop, daemon=True).start()
        threading.Thread(target=self._watchdog, daemon=True).start()

    def _loop(self):
        while not self.closed:
            try:
                conn = self.listener.accept()  # no handshake here: see _handshake
            except OSError:
                if self.closed:
                    return
                time.sleep(0.01)  # out of file descriptors, say: do not spin
                continue
            with self._lock:
                if len(self._pending) >= MAX_HANDSHAKES:
                    _shut(min(self._pending, key=self._pending.get))
                self._pending[conn] = time.monotonic() + self.handshake_timeout
            threading.Thread(target=self._handshake, args=(conn,), daemon=True).start()

    def _handshake(self, conn):
        from multiprocessing.connection import answer_challenge, deliver_challenge

        peer = _peer(conn)
        try:
            _socket_timeouts(conn, self.handshake_timeout)
            if self.authkey is not None:
                deliver_challenge(conn, self.authkey)
                answer_challenge(conn, self.authkey)
            _socket_timeouts(conn, 0)
        except (OSError, EOFError, AuthenticationError, ValueError) as e:
            with self._lock:
                self._pending.pop(conn, None)
            self._note_dropped(peer, e)
            conn.close()
            return
        with self._lock:
            self._pending.pop(conn, None)
        P.set_nodelay(conn)
        self.conns.append(conn)
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass

    def _watchdog(self):
        """Shut the sockets of handshakes past their deadline (a trickling peer, too)."""
        while not self.closed:
            now = time.monotonic()
            with self._lock:  # under the lock: a connection in _pending is not closed yet
                for conn, deadline in self._pending.items():
                    if deadline < now:
                        _shut(conn)
            time.sleep(0.1)

    def _note_dropped(self, peer, error):
        self.dropped += 1
        now = time.monotonic()
        if self.dropped <= 3 or now - self._last_note >= 1.0:
            self._last_note = now
            why = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
            print(f"[dato-dist] dropped a connection from {peer} that did not authenticate "
                  f"({why}); {self.dropped} dropped so far", flush=True)

    def close(self):
        self.closed = True
        try:
            self.listener.close()
        except OSError:
            pass


def _shut(conn):
    """Shut ``conn``'s socket: a handshake blocked on it wakes with an error."""
    try:
        with socket.socket(fileno=os.dup(conn.fileno())) as sock:
            sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


#: Seconds a connecting peer has to complete its HMAC handshake.
HANDSHAKE_TIMEOUT = 10.0
#: Handshakes under way at once; more connections wait in the listen backlog.
MAX_HANDSHAKES = 64
#: The listen backlog (connections the kernel queues before they are accepted).
BACKLOG = 512


def _peer(conn):
    try:
        with socket.socket(fileno=os.dup(conn.fileno())) as sock:
            host, port = sock.getpeername()[:2]
        return f"{host}:{port}"
    except OSError:
        return "an unknown peer"


def _socket_timeouts(conn, seconds):
    """Kernel send/receive timeouts on ``conn``'s socket (0: none); the fd stays blocking,
    which multiprocessing's Connection needs."""
    value = struct.pack("ll", int(seconds), int((seconds % 1) * 1e6))
    with socket.socket(fileno=os.dup(conn.fileno())) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, value)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, value)


class _Listener(Listener):
    """A Listener whose HMAC handshake :class:`Acceptor` does (concurrently, with a
    deadline), not ``accept()`` (one at a time, without one)."""

    def __init__(self, address, authkey):
        super().__init__(address, backlog=BACKLOG)
        self.job_authkey = authkey


def bind_listener(host, port_range, authkey):
    """A Listener on ``host`` at the first free port in ``port_range`` (or any port), with a
    real backlog; runners must prove ``authkey`` to its :class:`Acceptor`."""
    if not port_range:
        return _Listener((host, 0), authkey)
    start, end = port_range
    for port in range(start, end + 1):
        try:
            return _Listener((host, port), authkey)
        except OSError:
            continue
    raise OSError(f"no free port on {host} in {start}-{end}")
