"""A real PBS complex on emulated hosts (tests/emulated_hosts.py): OpenPBS
built by tests/local_pbs.py, its server, scheduler, comm and a mom on the
first host, a mom on each other host, each host with its own PBS_HOME
through its own /etc/pbs.conf (`ip netns exec` binds /etc/netns/NS/pbs.conf
over it). The server keeps its state in a PostgreSQL that PBS starts itself.

PBS refuses a server whose host name resolves to loopback, which is why the
complex lives on emulated hosts: each has an address, a name and a network
of its own, and every PBS daemon and every job process runs in its host's
namespaces. Files, /tmp and the process table are shared, so each mom gets a
job temp dir of its own (`$tmpdir`) and copies output files with cp
(`$usecp`), as moms on a shared file system do.

What the job scripts meet here is PBS's own: qsub, qstat -f, qdel,
PBS_NODEFILE, NCPUS and OMP_NUM_THREADS, TMPDIR, the job started in $HOME,
the walltime enforced by the mom (SIGTERM, then SIGKILL after kill_delay),
dependencies, pbs_tmrsh through the moms.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from typing import Dict, List, Optional, Sequence

from emulated_hosts import EmulatedHosts
from started import Started

POSTGRES_BIN = "/usr/lib/postgresql/15/bin"
START_TIMEOUT = 180.0
HOMES = "/var/lib/start_ray-tests"


class PbsComplex(Started):
    """The server and a mom on hosts[0], a mom on every other host."""

    def __init__(self, hosts: EmulatedHosts, exec_prefix: str) -> None:
        self.hosts = hosts
        self.exec = exec_prefix
        self.server = hosts.names[0]
        # PBS refuses a PBS_HOME below a world-writable folder (/tmp,
        # /var/tmp); the postgres user, which runs the data service, must
        # reach it.
        os.makedirs(HOMES, mode=0o755, exist_ok=True)
        self.dir = tempfile.mkdtemp(prefix="pbs-", dir=HOMES)
        os.chmod(self.dir, 0o755)
        self.made_etc_conf = False
        self.log: List[str] = []

    # --- the hosts -------------------------------------------------------
    def home(self, host: str) -> str:
        return os.path.join(self.dir, host)

    def conf(self, host: str) -> str:
        server = host == self.server
        return "".join(f"{key}={value}\n" for key, value in (
            ("PBS_EXEC", self.exec), ("PBS_SERVER", self.server), ("PBS_HOME", self.home(host)),
            ("PBS_START_SERVER", int(server)), ("PBS_START_SCHED", int(server)),
            ("PBS_START_COMM", int(server)), ("PBS_START_MOM", 1),
            ("PBS_CORE_LIMIT", "unlimited"), ("PBS_SCP", "/bin/false"),
            ("PGSQL_BIN", POSTGRES_BIN)))

    def on(self, host: str, command: Sequence[str], timeout: float = 120,
           check: bool = True, user: Optional[str] = None, cwd: Optional[str] = None) -> str:
        """Run `command` on `host` (its namespaces, its /etc/pbs.conf, PBS's
        commands on PATH), as root or as `user` (from `cwd`); its output."""
        path = f"{self.exec}/bin:{self.exec}/sbin:/usr/local/bin:/usr/bin:/bin"
        if user:
            command = ["runuser", "-u", user, "--", "env", f"PATH={path}", *command]
        done = subprocess.run(self.hosts.command_on(host, list(command)), cwd=cwd,
                              env={**os.environ, "PATH": f"{path}:{os.environ['PATH']}"},
                              capture_output=True, text=True, timeout=timeout)
        self.log.append(f"[{host}] {' '.join(command)} -> {done.returncode}\n"
                        f"{done.stdout}{done.stderr}")
        if check and done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} on {host} failed ({done.returncode}):\n"
                               f"{done.stdout}{done.stderr}")
        return done.stdout

    def qmgr(self, *commands: str) -> None:
        for command in commands:
            self.on(self.server, [f"{self.exec}/bin/qmgr", "-c", command])

    # --- start and stop --------------------------------------------------
    def start(self) -> None:
        if not os.path.exists("/etc/pbs.conf"):  # `ip netns exec` binds over what exists
            open("/etc/pbs.conf", "w").close()
            self.made_etc_conf = True
        for host in self.hosts.names:
            folder = f"/etc/netns/{self.hosts.namespace(host)}"
            with open(os.path.join(folder, "pbs.conf"), "w") as handle:
                handle.write(self.conf(host))
        # The server's host first (its data service, server and mom), then
        # the other moms, each creating its PBS_HOME (pbs_habitat).
        for host in self.hosts.names:
            self.on(host, [f"{self.exec}/libexec/pbs_init.d", "start"], timeout=START_TIMEOUT)
            self._configure_mom(host)
        self.qmgr("set server acl_roots = root", "set server flatuid = True",
                  "set server job_history_enable = True", "set server scheduling = True",
                  "set server job_requeue_timeout = 5",
                  *(f"create node {host}" for host in self.hosts.names[1:]))
        self.wait_free(self.hosts.names)

    def _configure_mom(self, host: str) -> None:
        """A job temp dir per mom (/var/tmp is shared between the emulated
        hosts), output copied with cp, resource use (the walltime) checked
        every second or two; then the mom reads its config again (SIGHUP)."""
        tmpdir = os.path.join(self.home(host), "jobtmp")
        os.makedirs(tmpdir, mode=0o1777, exist_ok=True)
        os.chmod(tmpdir, 0o1777)
        config = os.path.join(self.home(host), "mom_priv", "config")
        with open(config, "a") as handle:
            handle.write(f"$tmpdir {tmpdir}\n$usecp *:/ /\n"
                         "$min_check_poll 1\n$max_check_poll 2\n")
        with open(os.path.join(self.home(host), "mom_priv", "mom.lock")) as handle:
            os.kill(int(handle.read().split()[0]), signal.SIGHUP)

    def nodes(self) -> Dict[str, str]:
        """{node: state} as pbsnodes reports them."""
        out = self.on(self.server, [f"{self.exec}/bin/pbsnodes", "-a"], check=False)
        states, name = {}, None
        for line in out.splitlines():
            if line and not line.startswith(" "):
                name = line.strip()
            elif line.strip().startswith("state = ") and name:
                states[name] = line.split("=", 1)[1].strip()
        return states

    def wait_free(self, hosts: Sequence[str], timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            states = self.nodes()
            if all(states.get(host) == "free" for host in hosts):
                return
            time.sleep(0.5)
        raise RuntimeError(f"PBS nodes not free within {timeout:.0f}s: {self.nodes()}\n"
                           + "\n".join(self.log[-5:]))

    def stop(self) -> None:
        """Stop every daemon (moms first, the server's host last), then
        whatever still runs in the complex's namespaces (a job's leftover
        would be found by the tests before this)."""
        namespaces = [self.hosts.namespace(host) for host in self.hosts.names]
        # The daemons are orphans adopted by the test process (a subreaper):
        # reaped here as they end, or pbs_init.d would wait for their zombies.
        reaper = Reaper(in_namespaces(namespaces))
        try:
            for host in reversed(self.hosts.names):
                if os.path.exists(os.path.join(self.home(host), "pbs_version")):
                    try:
                        self.on(host, [f"{self.exec}/libexec/pbs_init.d", "stop"],
                                timeout=120, check=False)
                    except subprocess.TimeoutExpired:
                        pass
            kill_in_namespaces(namespaces)
        finally:
            reaper.stop()
        for host in self.hosts.names:
            conf = f"/etc/netns/{self.hosts.namespace(host)}/pbs.conf"
            if os.path.exists(conf):
                os.remove(conf)
        if self.made_etc_conf and os.path.exists("/etc/pbs.conf") and \
                os.path.getsize("/etc/pbs.conf") == 0:
            os.remove("/etc/pbs.conf")
        shutil.rmtree(self.dir, ignore_errors=True)

    # --- jobs ------------------------------------------------------------
    def qstat(self, job: str) -> Dict[str, str]:
        """`qstat -xf JOB` (finished jobs too) as {field: value}."""
        from start_ray.batch.scheduler import qstat_fields
        return qstat_fields(self.on(self.server, [f"{self.exec}/bin/qstat", "-xf", job]))

    def jobs(self) -> List[str]:
        """Every job the server knows (finished ones too), in submit order."""
        out = self.on(self.server, [f"{self.exec}/bin/qselect", "-x"], check=False)
        return sorted(out.split(), key=lambda job: int(job.split(".")[0]))

    def wait_all_finished(self, timeout: float) -> List[str]:
        """Every job, once none is queued, held, running or exiting."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            states = {job: self.qstat(job).get("job_state") for job in self.jobs()}
            if states and all(state in ("F", "M") for state in states.values()):
                return list(states)
            time.sleep(1)
        raise AssertionError(f"PBS jobs not finished within {timeout:.0f}s: "
                             f"{ {job: self.qstat(job).get('job_state') for job in self.jobs()} }")

    def mom_log(self, host: str) -> str:
        folder = os.path.join(self.home(host), "mom_logs")
        return "".join(open(os.path.join(folder, name)).read()
                       for name in sorted(os.listdir(folder))) if os.path.isdir(folder) else ""


def ensure_user(name: str) -> None:
    """A user of its own for the jobs (with a home: PBS starts a job there):
    PBS's moms track a job's processes by its user, and leave root's alone
    (they skip root-owned processes), so a root job is not what users run."""
    import pwd
    try:
        pwd.getpwnam(name)
    except KeyError:
        subprocess.run(["useradd", "--create-home", "--shell", "/bin/bash", name], check=True,
                       capture_output=True, timeout=60)


def namespace_inode(name: str) -> Optional[int]:
    try:
        return os.stat(f"/run/netns/{name}").st_ino
    except OSError:
        return None


def in_namespaces(names: Sequence[str]) -> List[int]:
    """PIDs of the processes whose network namespace is one of `names`."""
    inodes = {namespace_inode(name) for name in names} - {None}
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.stat(f"/proc/{entry}/ns/net").st_ino in inodes:
                found.append(int(entry))
        except OSError:
            continue
    return found


class Reaper:
    """Reaps the given PIDs (this process's adopted children) as they end."""

    def __init__(self, pids: Sequence[int]) -> None:
        self.pids = set(pids)
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while self.pids and not self.done.wait(0.1):
            for pid in list(self.pids):
                try:
                    if os.waitpid(pid, os.WNOHANG)[0] == pid:
                        self.pids.discard(pid)
                except ChildProcessError:  # not ours, or already reaped
                    self.pids.discard(pid)

    def stop(self) -> None:
        self.done.set()
        self.thread.join(timeout=5)


def kill_in_namespaces(names: Sequence[str], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = in_namespaces(names)
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        time.sleep(0.2)
