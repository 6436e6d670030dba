"""This host's own addresses, read from the kernel: a first boot has no route to ask anyone."""

from __future__ import annotations

import fcntl
import os
import socket
import struct

#: Interfaces that are not how anyone reaches the host: loopback and Docker's bridges and veths.
_NOT_OURS = ("lo", "docker", "br-", "veth")
_SIOCGIFADDR = 0x8915


def addresses(sysfs: str = "/sys/class/net") -> list[str]:
    """IPv4 addresses of the host's own interfaces, in interface-name order."""
    found = []
    for name in sorted(os.listdir(sysfs)):
        if name.startswith(_NOT_OURS):
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            try:
                packed = fcntl.ioctl(probe.fileno(), _SIOCGIFADDR, struct.pack("256s", name[:15].encode()))
            except OSError:
                continue
        found.append(socket.inet_ntoa(packed[20:24]))
    return found


def hostname() -> str:
    return socket.gethostname()
