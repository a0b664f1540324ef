"""Flux, asked about a batch job from inside it (flux --parent job info),
and a chain's next link: the job's own jobspec submitted again."""

from __future__ import annotations

import json
import re
import subprocess
import time
from typing import Any, Dict, List, Mapping, Optional

from start_ray.batch.scheduler import TIMEOUT, Scheduler, _run
from start_ray.errors import UsageError


class Flux(Scheduler):
    """Flux (flux-core), as a real Flux 0.88 does it. A batch script runs in
    an instance of its own (`flux batch`): `flux` there talks to that
    instance, FLUX_JOB_ID is unset, and the script's job, its jobspec and
    its dependencies live in the parent instance (`flux --parent ...`),
    where this job's id is `flux getattr jobid`. The next link is this
    job's own jobspec as submitted (`flux job info --original`: its size,
    time limit, name, queue, output, shell options, the script's text and
    the submitting environment), submitted again with a dependency on this
    job and the chain's variables."""

    name = "Flux"
    job_variable = "FLUX_JOB_ID"
    THIS_SCRIPT = "(the script in this job's jobspec)"
    # Flux's signal shell plugin may fire "a few seconds" early (signal.c).
    EARLY = 5.0

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.env = environ
        self._fields = None
        self.job_id = _run(["flux", "getattr", "jobid"]).strip()

    def read_fields(self) -> Dict[str, str]:
        info = ["flux", "--parent", "job", "info"]
        return {"jobspec": _run([*info, "--original", self.job_id, "jobspec"]),
                "R": _run([*info, self.job_id, "R"])}

    def jobspec(self) -> Dict[str, Any]:
        return json.loads(self.fields["jobspec"])

    def system(self) -> Dict[str, Any]:
        return self.jobspec().get("attributes", {}).get("system", {})

    def expiration(self) -> Optional[float]:
        """When Flux ends this job (R's execution.expiration; 0: never)."""
        value = json.loads(self.fields["R"]).get("execution", {}).get("expiration") or 0
        return float(value) or None

    def submit_options(self) -> List[str]:
        """What the next link keeps of this one, as `flux batch` options
        (for the log: the jobspec itself is what is submitted)."""
        spec, system = self.jobspec(), self.system()
        options = []
        resources = spec.get("resources", [{}])
        node = resources[0] if resources and resources[0].get("type") == "node" else None
        slot: Dict[str, Any] = next(
            (r for r in (node or {}).get("with", resources) if r.get("type") == "slot"), {})
        if node is not None:
            options.append(f"--nodes={node.get('count', 1)}")
        nslots = slot.get("count", 1) * (node.get("count", 1) if node else 1)
        options.append(f"--nslots={nslots}")
        for item in slot.get("with", []):
            if item.get("type") in ("core", "gpu"):
                options.append(f"--{item['type']}s-per-slot={item.get('count', 1)}")
        if system.get("duration"):
            options.append(f"--time-limit={system['duration']:g}s")
        if system.get("job", {}).get("name"):
            options.append(f"--job-name={system['job']['name']}")
        if system.get("queue"):
            options.append(f"--queue={system['queue']}")
        shell = system.get("shell", {}).get("options", {})
        output = shell.get("output", {}).get("stdout", {}).get("path")
        if output:
            options.append(f"--output={output}")
        signal_option = shell.get("signal")
        if isinstance(signal_option, dict):
            options.append(f"--signal={signal_option.get('signum', 10)}@"
                           f"{signal_option.get('timeleft', 60):g}s")
        return options

    def script(self) -> Optional[str]:
        """Flux keeps the script's text in the jobspec, which is what the
        next link runs again."""
        files = self.system().get("files", {})
        return self.THIS_SCRIPT if files.get("script", {}).get("data") else None

    def time_limit(self) -> Optional[int]:
        """Seconds left until the job's expiration (counted from now)."""
        expiration = self.expiration()
        return max(0, int(expiration - time.time())) if expiration else None

    def warning_sent(self) -> bool:
        """Whether Flux's own warning (`flux batch --signal=SIG@T`) has been
        sent: Flux sends it to the instance's jobs (the step's tasks), not
        to the batch script, so the link cannot see it come. It is due at
        the expiration less T."""
        signal_option = self.system().get("shell", {}).get("options", {}).get("signal")
        expiration = self.expiration()
        if not isinstance(signal_option, dict) or expiration is None:
            return False
        lead = signal_option.get("timeleft", 60)
        lead = seconds_of(lead) if isinstance(lead, str) else float(lead)
        return time.time() >= expiration - lead - self.EARLY

    def cautions(self) -> List[str]:
        """Flux 0.88 sends `flux batch --signal` to every broker of the batch
        job, and the brokers after the first shut down on it: a job of
        several nodes then loses them all at the warning (tests/test_flux.py)."""
        signal_option = self.system().get("shell", {}).get("options", {}).get("signal")
        resources = self.jobspec().get("resources", [{}])
        nodes = resources[0].get("count", 1) if resources and \
            resources[0].get("type") == "node" else 1
        if not isinstance(signal_option, dict) or nodes < 2:
            return []
        return [f"this job has `flux batch --signal` and {nodes} nodes: Flux sends the signal "
                "to every broker of the batch job, and those after the first shut down on it, "
                "so the step loses its other nodes at the warning (status 1, the chain ends). "
                "Submit without --signal: WARNING=SECONDS has start_ray send the warning to "
                "your program instead"]

    def submit_after(self, script: str, options: List[str], env: Dict[str, str]) -> str:
        spec = self.jobspec()
        system = spec.setdefault("attributes", {}).setdefault("system", {})
        if script != self.THIS_SCRIPT:
            with open(script) as handle:
                system.setdefault("files", {})["script"] = {
                    "mode": 0o100755, "data": handle.read(), "encoding": "utf-8"}
        system.setdefault("environment", {}).update(env)
        system["dependencies"] = [d for d in system.get("dependencies", [])
                                  if d.get("scheme") != "afterany"]
        system["dependencies"].append({"scheme": "afterany", "value": self.job_id})
        try:
            done = subprocess.run(["flux", "--parent", "job", "submit"], input=json.dumps(spec),
                                  capture_output=True, text=True, timeout=TIMEOUT)
        except (OSError, subprocess.SubprocessError) as err:
            raise UsageError(f"flux job submit failed: {err}") from None
        if done.returncode != 0:
            raise UsageError(f"`flux --parent job submit` failed: {done.stderr.strip()}")
        return done.stdout.strip()

    def cancel(self, job: str) -> None:
        _run(["flux", "--parent", "cancel", job])


def seconds_of(text: str) -> float:
    """A Flux duration (`90`, `90s`, `10m`, `2h`, `1d`) in seconds."""
    match = re.fullmatch(r"([\d.]+)([smhd]?)", text.strip())
    if not match:
        raise ValueError(f"not a duration: {text!r}")
    return float(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[
        match.group(2)]
