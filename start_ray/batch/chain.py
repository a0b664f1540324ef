"""A chain of batch jobs ("links") that runs one program for longer than one
job's time limit. Any driver can take part; the contract is its exit status:

    on the walltime warning: save your state, exit 0   the chain goes on
    exit 75 (EX_TEMPFAIL), with or without a warning   the chain goes on
    killed by the walltime signal itself (128+N;       the chain goes on
      N or N|9 from MPICH's mpiexec, once warned)
    killed at the time limit (SIGTERM then)            the chain goes on
    exit 0 without a warning                           done: the chain ends
    any other status                                   failed: the chain ends
    cancelled (qdel, scancel: SIGTERM before the       the chain ends: the
      time limit)                                        queued link is deleted

A step killed by the walltime signal is not a failure: the scheduler sent
the warning to every process of the step, one of them before it could
handle it (the warning came as the step started).

Each link first queues the next one, to start once this one has ended
whatever its end (so the chain survives a link killed at its time limit),
with the options this job was submitted with (scheduler.py and one module per scheduler); then it runs
the step (step.py); at the end it cancels the queued link if the chain is
done or failed. The driver finds START_RAY_CHAIN_LINK (1, 2, ...) and
START_RAY_CHAIN_ID (the first link's job id) in its environment, to know
where it is; its state between links is its own (a checkpoint folder).

    python -m start_ray.jobs chain [--max-links N] [--warn-before S] -- srun ...
"""

from __future__ import annotations

import os
import signal
from typing import List, Mapping, Optional, Sequence

from start_ray.batch import scheduler, schedulers
from start_ray.batch.step import Step, died_of, say
from start_ray.errors import UsageError

NOT_DONE = 75  # EX_TEMPFAIL: "try again", the chain goes on
LINK = "START_RAY_CHAIN_LINK"
CHAIN_ID = "START_RAY_CHAIN_ID"


def outcome(status: int, warned: bool, walltime_signal: int = signal.SIGUSR1) -> str:
    """`continues`, `done` or `failed`, by the contract above."""
    if status == NOT_DONE or died_of(status, walltime_signal, warned) or (status == 0 and warned):
        return "continues"
    return "done" if status == 0 else "failed"


def link(cmd: Sequence[str], max_links: int, warn_before: float = 0.0,
         script: Optional[str] = None, environ: Optional[Mapping[str, str]] = None,
         step: Optional[Step] = None) -> int:
    """One link: queue the next, run the step, end the chain or not. The
    link's exit status: 0 unless the driver failed (then the driver's)."""
    env = os.environ if environ is None else environ
    try:
        batch = schedulers.around(env)
    except UsageError as err:  # the scheduler's own command failed: run, alone
        say(f"could not ask the scheduler about this job: {err}; this link runs alone")
        batch = None
    number = int(env.get(LINK, "1"))
    chain = env.get(CHAIN_ID) or (batch.job_id.split(".")[0] if batch else "local")
    os.environ.update({LINK: str(number), CHAIN_ID: chain})  # the step and the driver see them
    say(f"chain {chain}: link {number} of at most {max_links}")
    for caution in _cautions(batch):
        say(f"warning: {caution}")
    queued = queue_next(batch, number, max_links, chain, script)
    step = step or Step(cmd)
    cancelled: List[str] = []  # the queued link, once deleted

    def cancel_queued(why: str) -> None:
        if queued and batch is not None and not cancelled:
            cancelled.append(queued)
            try:
                batch.cancel(queued)
                say(f"chain {chain}: cancelled the queued link (job {queued}): {why}")
            except UsageError as err:
                say(f"chain {chain}: could not cancel the queued link (job {queued}): {err}")

    # At once: the scheduler kills this script too, a few seconds later.
    step.on_cancel = lambda: cancel_queued(f"link {number} was cancelled")
    status = step.run(batch, warn_before)
    if step.cancelled:
        say(f"chain {chain}: link {number} was cancelled (SIGTERM before its time limit): "
            f"the chain ends here; resubmit with {LINK}={number} {CHAIN_ID}={chain} to go on")
        return status or 1
    warned = step.warned.is_set() or sent_to_the_tasks(batch)
    result = "continues" if step.at_limit else outcome(status, warned, step.walltime_signal)
    if step.at_limit:
        say(f"the step was stopped at its time limit (status {status}): not done")
    elif result == "continues" and step.ended_by_warning(status):
        say(f"the step was ended by the walltime signal itself "
            f"({signal.Signals(step.walltime_signal).name}): not done")
    if result == "continues" and step.no_time and queued and batch is not None:
        cancel_queued("this link had no time left, and neither would the next; give each "
                      "link a longer time limit")
        return 0
    if result == "continues":
        say(f"chain {chain}: not done; job {queued} continues it" if queued else
            f"chain {chain}: not done, and no next link is queued (MAX_LINKS {max_links} or "
            f"no scheduler): resubmit with {LINK}={number + 1} {CHAIN_ID}={chain} to go on")
        return 0
    cancel_queued(f"link {number} {result}")
    if result == "done":
        say(f"chain {chain}: done after {number} link(s)")
        return 0
    say(f"chain {chain}: link {number} failed (status {status}): the chain ends here; "
        f"resubmit with {LINK}={number + 1} {CHAIN_ID}={chain} to go on once it is fixed")
    return status


def _cautions(batch: Optional[scheduler.Scheduler]) -> List[str]:
    if batch is None:
        return []
    try:
        return batch.cautions()
    except (UsageError, ValueError, KeyError):
        return []


def sent_to_the_tasks(batch: Optional[scheduler.Scheduler]) -> bool:
    """The scheduler warned the step's tasks, not this script (Flux's
    `--signal`): the driver saved and exited 0 on a warning this link never
    saw."""
    if batch is None:
        return False
    try:
        sent = batch.warning_sent()
    except (UsageError, ValueError, KeyError) as err:
        say(f"could not ask {batch.name} whether it sent the walltime warning: {err}")
        return False
    if sent:
        say(f"{batch.name} sent its walltime warning to the step's tasks")
    return sent


def queue_next(batch: Optional[scheduler.Scheduler], number: int, max_links: int,
               chain: str, script: Optional[str]) -> Optional[str]:
    """The next link's job id, or None (the last link, no scheduler, or
    the submission failed: this link still runs)."""
    if batch is None:
        say("not in a batch job: this link runs alone")
        return None
    if number >= max_links:
        say(f"the last link allowed (--max-links {max_links}): none queued")
        return None
    try:
        script = script or batch.script()
        if not script:
            say(f"{batch.name} does not say which script this job runs: set CHAIN_SCRIPT to "
                "queue the next link; this link runs alone and the chain stops after it")
            return None
        options = batch.submit_options()
        queued = batch.submit_after(script, options, {LINK: str(number + 1), CHAIN_ID: chain})
    except (UsageError, OSError, ValueError, KeyError) as err:
        say(f"could not queue the next link: {err}; this link runs alone and the chain "
            "stops after it")
        return None
    say(f"link {number + 1} queued as job {queued} (it starts when this one has ended): "
        f"{script} {' '.join(options)}")
    return queued
