"""The batch scheduler around a job, asked about the job itself: its options
as submitted, its time limit, and how to queue the next job of a chain with
the same options.

A chain's next link must land where the first one did (account, partition,
QoS, output file, constraint, GRES, mail): options given on the first
`sbatch`/`qsub` command line are not in the script, so they are read back
from the scheduler (`scontrol show job`, `qstat -f`) and passed again.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from typing import Any, Dict, List, Mapping, Optional

from start_ray.errors import UsageError

TIMEOUT = 30.0


def _run(cmd: List[str]) -> str:
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT)
    except (OSError, subprocess.SubprocessError) as err:
        raise UsageError(f"{cmd[0]} failed: {err}") from None
    if done.returncode != 0:
        raise UsageError(f"`{' '.join(cmd)}` failed: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout


def seconds(text: str) -> Optional[int]:
    """`1-02:03:04`, `02:03:04`, `03:04` or `5` (minutes, Slurm) -> seconds."""
    match = re.fullmatch(r"(?:(\d+)-)?(?:(\d+):)?(\d+):(\d+)", text.strip())
    if match:
        days, hours, minutes, secs = (int(part or 0) for part in match.groups())
        return ((days * 24 + hours) * 60 + minutes) * 60 + secs
    return int(text) * 60 if text.strip().isdigit() else None


class Scheduler:
    """One batch system, as seen from inside one of its jobs."""

    name = ""
    job_variable = ""  # where the scheduler puts the job id

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.env = environ
        self.job_id = environ[self.job_variable]
        self._fields: Optional[Dict[str, str]] = None

    @property
    def fields(self) -> Dict[str, str]:
        """What the scheduler reports of this job (asked once)."""
        if self._fields is None:
            self._fields = self.read_fields()
        return self._fields

    def read_fields(self) -> Dict[str, str]:
        raise NotImplementedError

    def submit_options(self) -> List[str]:
        """Options that submit a job like this one."""
        raise NotImplementedError

    def script(self) -> Optional[str]:
        """The batch script this job runs, as submitted (its absolute path)."""
        raise NotImplementedError

    def time_limit(self) -> Optional[int]:
        """This job's time limit in seconds, if it has one."""
        raise NotImplementedError

    def submit_after(self, script: str, options: List[str], env: Dict[str, str]) -> str:
        """Queue `script` to start once this job has ended; its job id."""
        raise NotImplementedError

    def warning_sent(self) -> bool:
        """Whether the scheduler sent the walltime warning to the step's tasks
        and not to the batch script (which then never saw it)."""
        return False

    def cancel(self, job: str) -> None:
        raise NotImplementedError


class Slurm(Scheduler):
    name = "Slurm"
    job_variable = "SLURM_JOB_ID"

    def read_fields(self) -> Dict[str, str]:
        text = _run(["scontrol", "show", "job", self.job_id])
        return dict(re.findall(r"(?:^|\s)([\w/:]+)=(\S*)", text))

    def _given(self, name: str) -> Optional[str]:
        value = self.fields.get(name, "")
        return None if value in ("", "(null)", "N/A", "NONE", "*") else value

    def submit_options(self) -> List[str]:
        options = []
        for field, option in (("JobName", "--job-name"), ("Account", "--account"),
                              ("Partition", "--partition"), ("QOS", "--qos"),
                              ("Features", "--constraint"), ("MailUser", "--mail-user"),
                              ("MailType", "--mail-type"), ("NumNodes", "--nodes"),
                              ("CPUs/Task", "--cpus-per-task"), ("TimeLimit", "--time"),
                              ("WorkDir", "--chdir")):
            value = self._given(field)
            if value is not None:
                options.append(f"{option}={value}")
        per_node = (self._given("NtasksPerN:B:S:C") or "0").split(":")[0]
        if per_node.isdigit() and int(per_node) > 0:
            options.append(f"--ntasks-per-node={per_node}")
        elif self._given("NumTasks"):
            options.append(f"--ntasks={self._given('NumTasks')}")
        gres = self._given("TresPerNode")
        if gres:
            options.append("--gres=" + ",".join(re.sub(r"^gres[:/]", "", part)
                                                 for part in gres.split(",")))
        out, err = self._given("StdOut"), self._given("StdErr")
        if out:
            options.append("--output=" + self.pattern(out))
        if err and err != out:
            options.append("--error=" + self.pattern(err))
        return options

    def pattern(self, path: str) -> str:
        """An output path as Slurm wrote it (`out/link-42.log`) made a pattern
        again (`out/link-%j.log`): the job id, as a whole number, in the file
        name only (`pytest-42/` is a folder that stays)."""
        folder, name = os.path.split(path)
        return os.path.join(folder, re.sub(rf"(?<!\d){re.escape(self.job_id)}(?!\d)", "%j",
                                           name))

    def script(self) -> Optional[str]:
        return self._given("Command")

    def time_limit(self) -> Optional[int]:
        limit = self._given("TimeLimit")
        return seconds(limit) if limit and limit != "UNLIMITED" else None

    def submit_after(self, script: str, options: List[str], env: Dict[str, str]) -> str:
        exports = ",".join(["ALL"] + [f"{key}={value}" for key, value in env.items()])
        out = _run(["sbatch", "--parsable", f"--dependency=afterany:{self.job_id}",
                    *options, f"--export={exports}", script])
        return out.strip().split(";")[0]

    def cancel(self, job: str) -> None:
        _run(["scancel", job])


class Pbs(Scheduler):
    name = "PBS"
    job_variable = "PBS_JOBID"

    def read_fields(self) -> Dict[str, str]:
        text = re.sub(r"\n\t", "", _run(["qstat", "-f", self.job_id]))  # joined lines
        return {key.strip(): value.strip() for key, value in
                re.findall(r"^\s+([\w.]+) = (.*)$", text, re.M)}

    def submit_options(self) -> List[str]:
        fields, number = self.fields, self.job_id.split(".")[0]
        options = []
        for field, option in (("Job_Name", "-N"), ("Account_Name", "-A"), ("queue", "-q"),
                              ("Join_Path", "-j"), ("Mail_Points", "-m"), ("Mail_Users", "-M")):
            if fields.get(field) and fields[field] != "n":
                options += [option, fields[field]]
        for key, value in sorted(fields.items()):
            if key.startswith("Resource_List.") and key.split(".", 1)[1] in (
                    "select", "walltime", "place", "filesystems"):
                options += ["-l", f"{key.split('.', 1)[1]}={value}"]
        for field, option in (("Output_Path", "-o"), ("Error_Path", "-e")):
            path = fields.get(field, "").split(":", 1)[-1]
            if path and number not in os.path.basename(path):  # not PBS's own default
                options += [option, path]
        return options

    def script(self) -> Optional[str]:
        arguments = self.fields.get("Submit_arguments", "").split()
        if not arguments:
            return None
        workdir = self.env.get("PBS_O_WORKDIR", "")
        return os.path.join(workdir, arguments[-1])

    def time_limit(self) -> Optional[int]:
        limit = self.fields.get("Resource_List.walltime")
        return seconds(limit) if limit else None

    def submit_after(self, script: str, options: List[str], env: Dict[str, str]) -> str:
        variables = ",".join(f"{key}={value}" for key, value in env.items())
        out = _run(["qsub", "-V", "-W", f"depend=afterany:{self.job_id}", *options,
                    *(["-v", variables] if variables else []), script])
        return out.strip()

    def cancel(self, job: str) -> None:
        _run(["qdel", job])


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


class Lsf(Scheduler):
    """IBM Spectrum LSF: bjobs reports the job's options (as JSON); a chain
    link is `bsub -w "ended(ID)"` with the script on stdin (its #BSUB lines
    are read again). LSF sends the walltime warning itself (`bsub -wa USR1
    -wt MINUTES`): no time limit needed here."""

    name = "LSF"
    job_variable = "LSB_JOBID"

    def read_fields(self) -> Dict[str, str]:
        out = _run(["bjobs", "-json", "-o", "job_name queue proj_name output_file error_file",
                    self.job_id])
        records = json.loads(out).get("RECORDS") or [{}]
        return {key: str(value) for key, value in records[0].items()}

    def submit_options(self) -> List[str]:
        options = []
        for field, option in (("JOB_NAME", "-J"), ("QUEUE", "-q"), ("PROJ_NAME", "-P"),
                              ("OUTPUT_FILE", "-o"), ("ERROR_FILE", "-e")):
            value = self.fields.get(field, "")
            if value and value != "default":
                options += [option, value.replace(self.job_id, "%J")]
        return options

    def script(self) -> Optional[str]:
        return None  # LSF keeps a wrapper of its own: the script says (CHAIN_SCRIPT)

    def time_limit(self) -> Optional[int]:
        return None

    def submit_after(self, script: str, options: List[str], env: Dict[str, str]) -> str:
        exports = ",".join(["all"] + [f"{key}={value}" for key, value in env.items()])
        try:
            stdin = open(script)
        except OSError as err:
            raise UsageError(f"cannot read the next link's script {script}: {err.strerror} "
                             "(set CHAIN_SCRIPT to its path)") from None
        with stdin:
            try:
                done = subprocess.run(["bsub", "-w", f"ended({self.job_id})", *options,
                                       "-env", exports], stdin=stdin, capture_output=True,
                                      text=True, timeout=TIMEOUT)
            except (OSError, subprocess.SubprocessError) as err:
                raise UsageError(f"bsub failed: {err}") from None
        found = re.search(r"Job <(\d+)> is submitted", done.stdout)
        if done.returncode != 0 or not found:
            raise UsageError(f"bsub failed: {done.stderr.strip() or done.stdout.strip()}")
        return found.group(1)

    def cancel(self, job: str) -> None:
        _run(["bkill", job])


def around(environ: Optional[Mapping[str, str]] = None) -> Optional[Scheduler]:
    """The scheduler whose job this process runs in, if any."""
    env = os.environ if environ is None else environ
    if env.get("SLURM_JOB_ID"):
        return Slurm(env)
    if env.get("PBS_JOBID"):
        return Pbs(env)
    if env.get("LSB_JOBID"):
        return Lsf(env)
    if env.get("FLUX_URI"):  # a batch script in a Flux instance (no FLUX_JOB_ID there)
        return Flux(env)
    return None
