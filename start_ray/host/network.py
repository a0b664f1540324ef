"""Which address each Ray node uses, and whether a worker can reach the head.

Ray guesses a node's IP by routing toward 8.8.8.8: on HPC that picks the
management network or, with no default route, 127.0.0.1, and tasks then run
only on the head. start_ray picks the address itself and passes it as
`--node-ip-address` on every node: the named interface (`--interface ib0`),
else the address a worker uses to reach the head, else the host name's.
The interface that carries that address also goes to gloo and NCCL, which
open sockets of their own and would otherwise guess again.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Dict, List, Mapping, Optional, Tuple

import psutil

from start_ray.errors import AddressError


def ipv4_addresses() -> List[Tuple[str, str]]:
    """(interface, address) for every IPv4 address of an interface that is up."""
    stats = psutil.net_if_stats()
    found = []
    for name, addresses in psutil.net_if_addrs().items():
        if name in stats and not stats[name].isup:
            continue
        found += [(name, a.address) for a in addresses if a.family == socket.AF_INET]
    return found


# Libraries that open their own sockets, each with its own interface guess
# (gloo binds to the host name's address; NCCL and older Ray Train pick by
# name patterns): they get the node's interface, unless the user set them.
COLLECTIVE_VARIABLES = ("GLOO_SOCKET_IFNAME", "NCCL_SOCKET_IFNAME")


def interface_of(ip: str) -> Optional[str]:
    """The interface that carries `ip` on this host."""
    return next((name for name, address in ipv4_addresses() if address == ip), None)


def collective_environment(interface: Optional[str], ip: Optional[str],
                           env: Mapping[str, str]) -> Dict[str, str]:
    """GLOO_SOCKET_IFNAME and NCCL_SOCKET_IFNAME for a node on `interface`,
    except those the user set; none for a loopback node (left to Ray, as
    its address is)."""
    if not interface or not ip or is_loopback(ip):
        return {}
    return {name: interface for name in COLLECTIVE_VARIABLES if name not in env}


def is_loopback(ip: str) -> bool:
    return ipaddress.ip_address(ip).is_loopback


def interface_address(name: str) -> str:
    """The IPv4 address of interface `name` on this host."""
    for interface, address in ipv4_addresses():
        if interface == name:
            return address
    raise AddressError(f"--interface {name}: no such interface with an IPv4 address "
                       f"on {socket.gethostname()}; interfaces there: {interfaces()}")


def interfaces() -> str:
    """`eth0 (10.0.0.5), ib0 (10.1.0.5), lo (127.0.0.1)`: this host's
    choices, for messages that ask the user to pick one."""
    return ", ".join(sorted({f"{i} ({a})" for i, a in ipv4_addresses()})) or "none"


def route_source(toward: str) -> Optional[str]:
    """The local address the kernel would use to reach `toward` (a UDP
    connect sends nothing)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.connect((toward, 9))
            return sock.getsockname()[0]
    except OSError:
        return None


def hostname_address() -> Optional[str]:
    """The host name's address, when it is a non-loopback address of this host."""
    local = {address for _, address in ipv4_addresses()}
    try:
        _, _, addresses = socket.gethostbyname_ex(socket.gethostname())
    except OSError:
        return None
    return next((a for a in addresses if a in local and not is_loopback(a)), None)


def choose_address(interface: Optional[str], head_ip: Optional[str]) -> Tuple[str, str]:
    """This host's node address and why. `head_ip` is None on the head."""
    if interface:
        return interface_address(interface), f"interface {interface}"
    if head_ip and not is_loopback(head_ip):
        source = route_source(head_ip)
        if source and not is_loopback(source):
            return source, f"the route to the head ({head_ip})"
    by_name = hostname_address()
    if by_name:
        return by_name, f"the address of host name {socket.gethostname()}"
    source = route_source("8.8.8.8")  # Ray's own guess: the default route
    if source and not is_loopback(source):
        return source, "the default route"
    others = [(i, a) for i, a in ipv4_addresses() if not is_loopback(a)]
    if others:
        return others[0][1], f"the first interface with an address ({others[0][0]})"
    return "127.0.0.1", "loopback: this host has no other address"


def reach(ip: str, port: int, timeout: float) -> Optional[str]:
    """None when a TCP connection to ip:port opens, else why not."""
    try:
        with socket.create_connection((ip, port), timeout=timeout):
            return None
    except OSError as err:
        return str(err) or type(err).__name__
