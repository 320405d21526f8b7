"""What a run claims before it starts: its output directory (an `flock` held by `rl` and its processes, so a run that
died holds nothing) and the inference port (taken means an error, never somebody else's server)."""

from __future__ import annotations

import errno
import fcntl
import os
import socket
from pathlib import Path

from prime_rl.run_dir import RunDir
from prime_rl.utils.config import ConfigError
from prime_rl.utils.lifecycle import alive


class RunLock:
    """The exclusive lock on `output_dir/rl.lock`; children that inherit `fd` hold it as long as they live."""

    def __init__(self, output_dir: Path):
        self.path = RunDir(output_dir).lock
        make_output_dir(Path(output_dir))
        try:
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise ConfigError(f"`output_dir` = {output_dir}: cannot create {self.path}: {e.strerror}") from None
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(self.fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(self.fd)
            gone = holder.isdigit() and not alive(int(holder))
            who = f"the processes of an rl that died (pid {holder})" if gone else f"a running rl (pid {holder})"
            raise ConfigError(f"`output_dir` = {output_dir} is in use by {who}: {self.path} is locked") from None
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, f"{os.getpid()}\n".encode(), 0)


def make_output_dir(output_dir: Path) -> None:
    """Creates `output_dir`; ConfigError naming the key and path if it is a file or cannot be created."""
    if output_dir.exists() and not output_dir.is_dir():
        raise ConfigError(f"`output_dir` = {output_dir} is not a directory")
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"`output_dir` = {output_dir} cannot be created: {e.strerror}") from None


def check_port_free(host: str, port: int, section: str = "inference") -> None:
    """ConfigError naming `<section>.server.port` when `host:port` cannot be bound (as the server would bind it)."""
    if port == 0:
        return
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except OSError as e:
        raise ConfigError(f"`{section}.server.host` = {host!r} cannot be resolved: {e.strerror}") from None
    with socket.socket(family, kind, proto) as sock:
        # The server sets SO_REUSEADDR too: a port held only by closed connections (TIME_WAIT) is free.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as e:
            reason = "is already in use" if e.errno == errno.EADDRINUSE else f"cannot be bound: {e.strerror}"
            raise ConfigError(
                f"`{section}.server.port` = {port}: {host}:{port} {reason} (stop whatever listens there or choose "
                "another port)"
            ) from None
