"""Free TCP ports on loopback."""

from __future__ import annotations

import random
import socket

#: Dynamo parses DYN_SYSTEM_PORT as a signed 16-bit integer, so system ports must stay below
#: 32768, under the kernel's usual ephemeral range (32768-60999), where port 0 binds land.
LOW_PORT_RANGE = (20000, 32767)


def free_ports(count: int, host: str = "127.0.0.1",
               port_range: tuple[int, int] | None = None) -> list[int]:
    """`count` distinct ports that were free a moment ago (all probed at once, then released).

    Without `port_range` the kernel picks; with it, ports are drawn at random from the range.
    """
    socks: list[socket.socket] = []
    rng = random.Random()
    try:
        attempts = 0
        while len(socks) < count:
            attempts += 1
            if attempts > 50 * count + 100:
                raise OSError(f"no {count} free ports in {port_range} on {host}")
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            port = rng.randint(*port_range) if port_range else 0
            try:
                s.bind((host, port))
            except OSError:
                s.close()
                continue
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()
