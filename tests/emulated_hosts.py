"""Several "hosts" on this machine: one network namespace (and UTS namespace,
for the host name) each, joined by bridges in a namespace of their own, so the
machine's own network is untouched. Open MPI reaches them through a launch
agent that stands in for ssh. Only the network and the host name differ
between hosts: files, /tmp, /dev/shm, processes and CPUs are shared.

Networks (one interface per host on each), by default:
    eth0  10.200.0.0/24  every host; the host names resolve to these
    hsn0  10.201.0.0/24  every host
    ib0   10.202.0.0/24  hosts 0 and 1 only: the last host's ib0 is on a
                         bridge of its own (it cannot reach host 0)
`two_networks()` makes the multi-NIC trap instead:
    eth0  10.210.0.0/24  every host on a bridge of its own (connects no
                         hosts); the host names resolve to these
    eth1  10.211.0.0/24  every host
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from typing import Dict, List, Optional, Sequence

from started import Started

NETWORKS = {"eth0": "10.200.0", "hsn0": "10.201.0", "ib0": "10.202.0"}
ISOLATED = "ib0"  # on this network the last host is cut off

AGENT = """#!/bin/sh
# Stands in for ssh: [ssh options] HOST COMMAND... runs COMMAND in HOST's
# network namespace, with HOST as its host name.
while [ $# -gt 0 ]; do
  case "$1" in
    -o|-p|-l|-i|-F|-E|-J) shift 2 ;;
    -*) shift ;;
    *) break ;;
  esac
done
host=$1; shift
exec ip netns exec "{prefix}$host" unshare --uts sh -c 'hostname "$0"; exec /bin/sh -c "$1"' "$host" "$*"
"""


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=30)


def unavailable() -> Optional[str]:
    """Why namespaces cannot be made here, or None."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool in ("ip", "unshare"):
        if shutil.which(tool) is None:
            return f"`{tool}` is not installed"
    probe = f"srprobe{uuid.uuid4().hex[:6]}"
    try:
        _ip("netns", "add", probe)
    except (subprocess.CalledProcessError, OSError) as err:
        return f"cannot create a network namespace: {getattr(err, 'stderr', err)}"
    _ip("netns", "del", probe)
    return None


class EmulatedHosts(Started):
    def __init__(self, count: int = 3, networks: Optional[Dict[str, str]] = None,
                 cut: Optional[Dict[str, Sequence[int]]] = None,
                 mpi_network: str = "eth0") -> None:
        """`networks`: name -> /24 prefix (the host names resolve to the
        first); `cut`: per network, the hosts on a bridge of their own;
        `mpi_network`: where MPI's own traffic goes."""
        self.names = [f"h{i}" for i in range(count)]
        self.networks = dict(networks or NETWORKS)
        self.cut = {ISOLATED: [count - 1]} if cut is None else dict(cut)
        self.mpi_network = mpi_network
        self.prefix = f"sr{uuid.uuid4().hex[:5]}"  # unique per fixture: jobs may overlap
        self.bridge_ns = self.prefix + "br"
        self.dir = tempfile.mkdtemp(prefix="srhosts-")
        self.agent = os.path.join(self.dir, "agent")
        self.made: List[str] = []

    @classmethod
    def two_networks(cls, count: int = 3) -> "EmulatedHosts":
        """Each host's name resolves to an address no other host can reach
        (eth0); only eth1 connects them."""
        return cls(count, networks={"eth0": "10.210.0", "eth1": "10.211.0"},
                   cut={"eth0": range(count)}, mpi_network="eth1")

    def address(self, host: int, network: Optional[str] = None) -> str:
        """Host `host`'s address on `network` (default: the first, the names')."""
        return f"{self.networks[network or next(iter(self.networks))]}.{10 + host}"

    def namespace(self, host: str) -> str:
        return self.prefix + host

    def start(self) -> None:
        self._add_namespace(self.bridge_ns)
        for network in self.networks:
            bridges = [f"br-{network}"] + [f"cut-{network}-{i}" for i in self.cut.get(network, ())]
            for bridge in bridges:
                _ip("-n", self.bridge_ns, "link", "add", bridge, "type", "bridge")
                _ip("-n", self.bridge_ns, "link", "set", bridge, "up")
        hosts_file = "127.0.0.1 localhost\n" + "".join(
            f"{self.address(i)} {name}\n" for i, name in enumerate(self.names))
        for i, name in enumerate(self.names):
            ns = self.namespace(name)
            self._add_namespace(ns)
            os.makedirs(f"/etc/netns/{ns}", exist_ok=True)
            with open(f"/etc/netns/{ns}/hosts", "w") as handle:
                handle.write(hosts_file)
            _ip("-n", ns, "link", "set", "lo", "up")
            for network in self.networks:
                cut = i in self.cut.get(network, ())
                port = f"{network}-{i}"
                _ip("link", "add", port, "netns", self.bridge_ns, "type", "veth",
                    "peer", "name", network, "netns", ns)
                _ip("-n", self.bridge_ns, "link", "set", port, "master",
                    f"cut-{network}-{i}" if cut else f"br-{network}", "up")
                _ip("-n", ns, "addr", "add", f"{self.address(i, network)}/24", "dev", network)
                _ip("-n", ns, "link", "set", network, "up")
        with open(self.agent, "w") as handle:
            handle.write(AGENT.format(prefix=self.prefix))
        os.chmod(self.agent, 0o755)

    def _add_namespace(self, ns: str) -> None:
        _ip("netns", "add", ns)
        self.made.append(ns)

    def command_on(self, host: str, command: Sequence[str]) -> List[str]:
        """`command` as run on `host` (its namespaces, its host name)."""
        return ["ip", "netns", "exec", self.namespace(host), "unshare", "--uts", "sh", "-c",
                'hostname "$0"; exec "$@"', host, *command]

    def mpirun_env(self) -> Dict[str, str]:
        """mpirun through the agent; MPI's own traffic on one network that
        connects every host (it would otherwise also try one that does not)."""
        return {"PRTE_MCA_plm_ssh_agent": self.agent,
                "OMPI_MCA_btl_tcp_if_include": self.mpi_network,
                "PRTE_MCA_oob_tcp_if_include": self.mpi_network}

    def stop(self) -> None:
        """Delete the namespaces (their interfaces go with them). Processes
        inside are not killed by this: the tests stop theirs first."""
        for ns in reversed(self.made):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)
            shutil.rmtree(f"/etc/netns/{ns}", ignore_errors=True)
        self.made = []
        shutil.rmtree(self.dir, ignore_errors=True)

    close = stop
