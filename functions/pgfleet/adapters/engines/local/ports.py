"""TCP port checks for servers of the local engine."""

from __future__ import annotations

import ipaddress
import socket


def port_is_free(host: str, port: int) -> bool:
    """Whether a server could listen on `host`:`port` right now.

    Tries to bind the port. SO_REUSEADDR is set because PostgreSQL sets it too: a port whose
    old connections linger in TIME_WAIT is free for PostgreSQL, while a port with a live
    listener still fails to bind on Linux.
    """
    family = socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True
