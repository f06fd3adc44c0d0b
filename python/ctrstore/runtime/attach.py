"""Attaching to a task: the shim's side (:class:`AttachServer`) and the client's
(:func:`attach`), speaking over the bundle's ``attach.sock``.

With no daemon, the shim is the one process that holds a task's stdio for its whole life:
``run`` (attached), ``start -a`` and ``attach`` connect to it to see what the container writes
and, for a container with an open stdin (``-i``), to type into it. The socket lives in the
bundle (0700, root's), and is reached through ``/proc/self/fd/<bundle dir>/attach.sock`` so
that a long bundle path never meets the 108-byte limit of a unix socket's name.

The protocol is frames, as docker's attach stream multiplexes stdout and stderr: a header of
one byte (the stream), three zero bytes and a big-endian 32-bit length, then the payload.

==========  ================  ===================================================================
stream      direction         payload
==========  ================  ===================================================================
0 STDIN     client → shim     bytes for the container's stdin; empty: this client's stdin ended
1 STDOUT    shim → client     what the container wrote to stdout (or its terminal)
2 STDERR    shim → client     what it wrote to stderr
3 EXIT      shim → client     ``{"status": N, "restarting": bool}`` once the task exits, or
                              ``{"error": {"kind", "message"}}`` if it could not be started
4 RESIZE    client → shim     ``{"rows": R, "cols": C}``: the client's terminal size
5 SIGNAL    client → shim     a signal name to send to the task (docker's ``--sig-proxy``)
6 HELLO     client → shim     ``{"stdin": bool}``, the first frame a client sends
==========  ================  ===================================================================
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import struct
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ctrstore.errdefs import FailedPrecondition, class_of_kind

__all__ = [
    "DETACH_KEYS",
    "EXIT",
    "HELLO",
    "RESIZE",
    "SIGNAL",
    "STDERR",
    "STDIN",
    "STDOUT",
    "AttachServer",
    "Client",
    "attach",
    "recv_frame",
    "send_frame",
]

STDIN, STDOUT, STDERR, EXIT, RESIZE, SIGNAL, HELLO = range(7)
_HEADER = struct.Struct(">B3xI")
MAX_FRAME = 1 << 20
DETACH_KEYS = b"\x10\x11"
"""Ctrl-P Ctrl-Q: docker's default detach sequence."""

SOCKET_NAME = "attach.sock"


@contextmanager
def _in_dir(directory: Path) -> Iterator[str]:
    """A short path naming ``directory/attach.sock`` (through an open descriptor of the dir)."""
    fd = os.open(directory, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        yield f"/proc/self/fd/{fd}/{SOCKET_NAME}"
    finally:
        os.close(fd)


def send_frame(sock: socket.socket, stream: int, payload: bytes = b"") -> None:
    sock.sendall(_HEADER.pack(stream, len(payload)) + payload)


def _recv_exact(sock: socket.socket, n: int) -> bytes | None:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


def recv_frame(sock: socket.socket) -> tuple[int, bytes] | None:
    """The next frame, or None when the peer closed (or sent something that is no frame)."""
    head = _recv_exact(sock, _HEADER.size)
    if head is None:
        return None
    stream, size = _HEADER.unpack(head)
    if size > MAX_FRAME:
        return None
    payload = _recv_exact(sock, size) if size else b""
    return None if payload is None else (stream, payload)


# ---------------------------------------------------------------------------------------------
# The shim's side


@dataclass
class _Peer:
    sock: socket.socket
    lock: threading.Lock
    stdin: bool


class AttachServer:
    """Listens on ``<bundle>/attach.sock`` for the shim; ``on_stdin(data)`` gets typed bytes
    (``b""``: a client's stdin ended), ``on_resize(rows, cols)`` and ``on_signal(name)`` the
    client's requests. Output goes to every client connected at the time (:meth:`broadcast`);
    a client that does not take it within 10 s is dropped rather than stall the container."""

    def __init__(
        self,
        bundle_dir: Path,
        *,
        on_stdin: Callable[[bytes], None],
        on_resize: Callable[[int, int], None],
        on_signal: Callable[[str], None],
    ) -> None:
        self.on_stdin = on_stdin
        self.on_resize = on_resize
        self.on_signal = on_signal
        self._peers: list[_Peer] = []
        self._lock = threading.Lock()
        self._connected = threading.Event()
        (bundle_dir / SOCKET_NAME).unlink(missing_ok=True)
        self.path = bundle_dir / SOCKET_NAME
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        with _in_dir(bundle_dir) as addr:
            self._listener.bind(addr)
        self._listener.listen(8)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        first = recv_frame(conn)
        if first is None or first[0] != HELLO:
            conn.close()
            return
        try:
            hello = json.loads(first[1])
        except ValueError:
            hello = {}
        conn.settimeout(10)
        peer = _Peer(conn, threading.Lock(), bool(isinstance(hello, dict) and hello.get("stdin")))
        with self._lock:
            self._peers.append(peer)
        self._connected.set()
        conn.settimeout(None)
        stdin_open = peer.stdin
        try:
            while True:
                frame = recv_frame(conn)
                if frame is None:
                    break
                stream, payload = frame
                if stream == STDIN and stdin_open:
                    if not payload:
                        stdin_open = False
                    self.on_stdin(payload)
                elif stream == RESIZE:
                    with contextlib.suppress(ValueError, KeyError, TypeError):
                        size = json.loads(payload)
                        self.on_resize(int(size["rows"]), int(size["cols"]))
                elif stream == SIGNAL:
                    self.on_signal(payload.decode("ascii", "replace"))
        except OSError:
            pass
        finally:
            self._drop(peer)
            # (a client that leaves with its stdin still open leaves the container's open)

    def _drop(self, peer: _Peer) -> None:
        with self._lock:
            if peer in self._peers:
                self._peers.remove(peer)
        with contextlib.suppress(OSError):
            peer.sock.close()

    def wait_for_client(self, timeout: float) -> bool:
        """Block until a client has said hello (``run``'s attach before the process starts)."""
        return self._connected.wait(timeout)

    def broadcast(self, stream: int, payload: bytes) -> None:
        with self._lock:
            peers = list(self._peers)
        for p in peers:
            try:
                with p.lock:
                    p.sock.settimeout(10)
                    send_frame(p.sock, stream, payload)
            except OSError:
                self._drop(p)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._listener.close()
        self.path.unlink(missing_ok=True)
        with self._lock:
            peers, self._peers = self._peers, []
        for p in peers:
            with contextlib.suppress(OSError):
                p.sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                p.sock.close()


# ---------------------------------------------------------------------------------------------
# The client's side


class Client:
    """A connection to a shim's attach socket."""

    def __init__(self, bundle_dir: Path, *, stdin: bool) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            with _in_dir(bundle_dir) as addr:
                self.sock.connect(addr)
        except (FileNotFoundError, ConnectionRefusedError):
            self.sock.close()
            raise FailedPrecondition(
                f"cannot attach to container {bundle_dir.name}: it is not running"
            ) from None
        self.lock = threading.Lock()
        self.send(HELLO, json.dumps({"stdin": stdin}).encode())

    def send(self, stream: int, payload: bytes = b"") -> None:
        with self.lock:
            send_frame(self.sock, stream, payload)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


def _terminal_size(fd: int) -> tuple[int, int] | None:
    try:
        size = os.get_terminal_size(fd)
    except OSError:
        return None
    return size.lines, size.columns


def attach(
    bundle_dir: Path,
    *,
    stdin: bool,
    tty: bool,
    proxy_signals: bool = True,
    detach_keys: bytes = DETACH_KEYS,
    stdin_fd: int = 0,
    stdout_fd: int = 1,
    stderr_fd: int = 2,
) -> int | None:
    """Attach our stdio to the task whose shim serves ``bundle_dir``: what it writes goes to
    ``stdout_fd``/``stderr_fd``; with ``stdin``, what we read from ``stdin_fd`` goes to it
    (in raw mode when that is a terminal and the task has one; ``detach_keys`` typed there
    detach). Unless our terminal is raw, SIGINT, SIGTERM and SIGHUP sent to us are passed on
    to the task (``proxy_signals``, docker's ``--sig-proxy``). Returns the task's exit
    status, or None if we detached or the shim went away without telling one."""
    client = Client(bundle_dir, stdin=stdin)
    detached = threading.Event()
    restore: Callable[[], None] | None = None
    old_handlers: dict[int, Any] = {}
    main_thread = threading.current_thread() is threading.main_thread()
    try:
        if tty and os.isatty(stdout_fd):
            size = _terminal_size(stdout_fd)
            if size:
                client.send(RESIZE, json.dumps({"rows": size[0], "cols": size[1]}).encode())
            if main_thread:

                def resized(_s: int, _f: object) -> None:
                    sz = _terminal_size(stdout_fd)
                    if sz:
                        with contextlib.suppress(OSError):
                            client.send(RESIZE, json.dumps({"rows": sz[0], "cols": sz[1]}).encode())

                old_handlers[signal.SIGWINCH] = signal.signal(signal.SIGWINCH, resized)
        raw = stdin and tty and os.isatty(stdin_fd)
        if proxy_signals and not raw and main_thread:

            def forward(signum: int, _f: object) -> None:
                with contextlib.suppress(OSError):
                    client.send(SIGNAL, signal.Signals(signum).name.encode())

            for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                old_handlers[s] = signal.signal(s, forward)
        if raw:
            restore = _raw(stdin_fd)
        elif tty and os.isatty(stdout_fd):
            # The container's terminal makes its newlines \r\n already: ours must not again.
            restore = _no_output_processing(stdout_fd)
        if stdin:
            threading.Thread(
                target=_pump_stdin,
                args=(client, stdin_fd, detach_keys if tty else b"", detached),
                daemon=True,
            ).start()
        while True:
            try:
                frame = recv_frame(client.sock)
            except OSError:
                frame = None
            if frame is None:
                return None
            stream, payload = frame
            if stream == STDOUT:
                _write_all(stdout_fd, payload)
            elif stream == STDERR:
                _write_all(stderr_fd, payload)
            elif stream == EXIT:
                doc = json.loads(payload)
                err = doc.get("error") if isinstance(doc, dict) else None
                if isinstance(err, dict):
                    raise class_of_kind(str(err.get("kind", "")))(str(err.get("message", "")))
                return int(doc["status"])
    finally:
        if restore is not None:
            restore()
        for signum, handler in old_handlers.items():
            signal.signal(signum, handler)
        client.close()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            n = os.write(fd, view)
        except BrokenPipeError:
            return
        view = view[n:]


def _raw(fd: int) -> Callable[[], None]:
    import termios
    import tty as ttymod

    old = termios.tcgetattr(fd)
    ttymod.setraw(fd, termios.TCSANOW)  # (not TCSAFLUSH: what was typed already is kept)
    return lambda: termios.tcsetattr(fd, termios.TCSADRAIN, old)


def _no_output_processing(fd: int) -> Callable[[], None]:
    import termios

    old = termios.tcgetattr(fd)
    new = list(old)
    new[1] = new[1] & ~termios.OPOST
    termios.tcsetattr(fd, termios.TCSANOW, new)
    return lambda: termios.tcsetattr(fd, termios.TCSADRAIN, old)


def _pump_stdin(client: Client, fd: int, detach_keys: bytes, detached: threading.Event) -> None:
    """Copy our stdin to the task until it ends (then say so) or the detach keys are typed
    (then leave: closing the socket ends :func:`attach`'s loop)."""
    matched = 0
    while True:
        try:
            data = os.read(fd, 1 << 15)
        except OSError:
            data = b""
        if not data:
            with contextlib.suppress(OSError):
                client.send(STDIN, b"")
            return
        if detach_keys:
            out = bytearray()
            for b in data:
                if b == detach_keys[matched]:
                    matched += 1
                    if matched == len(detach_keys):
                        detached.set()
                        with contextlib.suppress(OSError):
                            client.sock.shutdown(socket.SHUT_RDWR)
                        return
                    continue
                if matched:
                    out += detach_keys[:matched]
                    matched = 0
                out.append(b)
            data = bytes(out)
            if not data:
                continue
        try:
            client.send(STDIN, data)
        except OSError:
            return
