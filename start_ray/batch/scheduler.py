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
    """Flux (flux-core): the job is the Flux instance a batch script runs in
    (`flux batch`), which sets no FLUX_JOB_ID in the script itself: its id
    in the parent instance is `flux getattr jobid`. Its options are its
    jobspec (`flux job info ID jobspec`), the script's text included."""

    name = "Flux"
    job_variable = "FLUX_JOB_ID"

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.env = environ
        self.job_id = environ.get("FLUX_JOB_ID") or _run(["flux", "getattr", "jobid"]).strip()
        self._fields = None

    def read_fields(self) -> Dict[str, str]:
        return {"jobspec": _run(["flux", "job", "info", self.job_id, "jobspec"])}

    def jobspec(self) -> Dict[str, Any]:
        return json.loads(self.fields["jobspec"])

    def submit_options(self) -> List[str]:
        spec = self.jobspec()
        system = spec.get("attributes", {}).get("system", {})
        options = []
        node = next((r for r in spec.get("resources", []) if r.get("type") == "node"), None)
        if node is not None:
            slot: Dict[str, Any] = next(
                (r for r in node.get("with", []) if r.get("type") == "slot"), {})
            cores: Dict[str, Any] = next(
                (r for r in slot.get("with", []) if r.get("type") == "core"), {})
            options += [f"--nodes={node.get('count', 1)}"]
            if slot:
                options += [f"--ntasks={node.get('count', 1) * slot.get('count', 1)}",
                            f"--cores-per-task={cores.get('count', 1)}"]
        if system.get("duration"):
            options.append(f"--time-limit={int(system['duration'])}s")
        if system.get("job", {}).get("name"):
            options.append(f"--job-name={system['job']['name']}")
        if system.get("queue"):
            options.append(f"--queue={system['queue']}")
        output = system.get("shell", {}).get("options", {}).get("output", {})
        if output.get("stdout", {}).get("path"):
            options.append(f"--output={output['stdout']['path']}")
        return options

    def script(self) -> Optional[str]:
        """Flux keeps the script's text, not its path: written to a file
        in the submit folder for the next link."""
        text = self.jobspec().get("attributes", {}).get("system", {}).get(
            "batch", {}).get("script")
        if not text:
            return None
        path = os.path.abspath(f".start_ray-flux-{self.job_id}.sh")
        with open(path, "w") as handle:
            handle.write(text)
        os.chmod(path, 0o755)
        return path

    def time_limit(self) -> Optional[int]:
        duration = self.jobspec().get("attributes", {}).get("system", {}).get("duration")
        return int(duration) if duration else None

    def submit_after(self, script: str, options: List[str], env: Dict[str, str]) -> str:
        out = _run(["flux", "batch", f"--dependency=afterany:{self.job_id}", *options,
                    *[f"--env={key}={value}" for key, value in env.items()], script])
        return out.strip()

    def cancel(self, job: str) -> None:
        _run(["flux", "cancel", job])


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
    if env.get("FLUX_JOB_ID") or env.get("FLUX_URI"):
        return Flux(env)
    return None
