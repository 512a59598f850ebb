"""Who may change the server through the admin text protocol (``--admin-from``).

Listing commands (``status``, ``workers``, ``show jobs``...) stay open to every peer, as
in gearmand, because monitoring tools read them from elsewhere. Commands that change
state -- cancel a job, set maxqueue, create or drop a function, shutdown, retry or purge
dead letters, add or remove schedules, pause, resume, limit, drain -- answer
``ERR PERMISSION_DENIED`` unless the peer
connects from an allowed network: loopback only by default, so an exposed port no
longer lets anyone cancel jobs or lift queue limits.
"""

from __future__ import annotations

import ipaddress
from typing import Final

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

#: Admin commands (first word) that change state; the rest only read.
CHANGING: Final = frozenset({b"cancel", b"create", b"drop", b"maxqueue", b"shutdown",
                             b"retry", b"purge", b"schedule", b"pause", b"resume",
                             b"limit", b"drain"})
LOOPBACK: Final[tuple[Network, ...]] = (ipaddress.ip_network("127.0.0.0/8"),
                                        ipaddress.ip_network("::1/128"))
DENIED: Final = (b"ERR PERMISSION_DENIED admin+commands+that+change+state+are+accepted+"
                 b"only+from+--admin-from+addresses+(default:+loopback)\r\n")


def parse_admin_from(text: str) -> tuple[Network, ...]:
    """``--admin-from`` value: ``any``, or comma-separated addresses and CIDR networks.

    Raises:
        ValueError: naming the text.
    """
    if text.strip().lower() == "any":
        return (ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_network("::/0"))
    networks = []
    for part in (p.strip() for p in text.split(",")):
        try:
            networks.append(ipaddress.ip_network(part, strict=False))
        except ValueError:
            raise ValueError(f"--admin-from {text!r}: {part!r} is not an address or "
                             "network (e.g. 10.0.0.0/8, ::1, any)") from None
    return tuple(networks)


class AdminAccess:
    """Answers "may this peer change state?" from its address."""

    def __init__(self, networks: tuple[Network, ...] = LOOPBACK) -> None:
        self.networks = networks

    def allows(self, host: str) -> bool:
        if not host:  # a Unix socket or an in-process peer: local
            return True
        try:
            address = ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            return False
        mapped = getattr(address, "ipv4_mapped", None)
        if mapped is not None:
            address = mapped
        return any(address in network for network in self.networks)
