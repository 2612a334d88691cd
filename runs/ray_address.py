"""Whether an address is a Ray head before Ray is asked to join it: Ray retries an address that does not
answer, or where another service listens, for most of a minute before it fails; these checks take a second."""

from __future__ import annotations

import os
import socket
from contextlib import suppress

from l2l.runs.executors import ExecutorError

REACH_TIMEOUT_S = 10.0


def reach(address: str, timeout: float = REACH_TIMEOUT_S) -> None:
    """Raise `ExecutorError` unless the Ray head at ``host:port`` (or ``ray://host:port``) accepts a connection."""
    hostport = address.split("://", 1)[-1]
    host, sep, port = hostport.rpartition(":")
    if not sep or not host or not port.isdigit() or (":" in host and not host.startswith("[")):  # IPv6 in []
        raise ExecutorError(f"--address {address!r} is not host:port (or auto)")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout) as conn:
            grpc = speaks_grpc(conn, min(timeout, GRPC_TIMEOUT_S))
    except OSError as exc:
        waited = f" within {timeout:g}s" if isinstance(exc, TimeoutError) else ""  # a refusal comes at once
        raise ExecutorError(
            f"cannot reach the Ray cluster at {address!r}{waited}: {exc.strerror or exc}; "
            "is `ray start --head` running there?"
        ) from None
    if grpc is not None and grpc != "settings":  # Ray would retry for most of a minute before it said the same
        usual = "its Ray client server's port (10001 unless" if "://" in address else "its port (6379 unless"
        what = (
            f"something else listens on port {port} (it does not speak gRPC)"
            if grpc == "other"
            else f"port {port} accepted the connection and closed it without a gRPC answer (another service, or a "
            "tunnel with no head behind it)"
        )
        raise ExecutorError(f"{address!r} is not a Ray head: {what}; pass the address `ray start --head` printed "
                            f"there, {usual} --port was given)")  # fmt: skip


GRPC_TIMEOUT_S = 3.0
HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])  # + an empty SETTINGS frame


def speaks_grpc(conn: socket.socket, timeout: float) -> str | None:
    """How the server on ``conn`` answers HTTP/2's client preface: "settings" as a gRPC server (Ray's head, and
    its client server) does, "other" for any other answer, "closed" when it closes or resets the connection.
    None when that cannot be told: TLS on (RAY_USE_TLS), or no answer within ``timeout`` seconds."""
    if os.environ.get("RAY_USE_TLS", "0").lower() in ("1", "true"):
        return None
    conn.settimeout(timeout)
    answer = b""
    try:
        conn.sendall(HTTP2_PREFACE)
        while len(answer) < 9:  # a frame header: length (3 bytes), type, flags, stream id (4)
            chunk = conn.recv(9 - len(answer))
            if not chunk:
                break
            answer += chunk
    except TimeoutError:
        return None if not answer else "other"
    except OSError:  # reset by a server that took the preface for garbage
        return "closed" if not answer else "other"
    if not answer:
        return "closed"
    return "settings" if len(answer) == 9 and answer[3] == 4 else "other"


def head_alive(address: str, timeout: float = 2.0) -> bool:
    """Whether the head at ``address`` (host:port) still accepts connections."""
    host, _, port = address.rpartition(":")
    with suppress(OSError, ValueError):
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            return True
    return False
