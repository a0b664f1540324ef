"""Train an RLlib policy (PPO by default) on the cluster start_ray brought up.

    mpirun -np 4 python -m start_ray drivers/train_ppo.py --framework tf2 --stop-iters 20
    python drivers/train_ppo.py --stop-reward 450          # alone: a local Ray

It attaches to the cluster in RAY_ADDRESS (or --ray-address); run alone, it
starts a local Ray. By default it uses every CPU of the cluster: one for the
learner, the rest for env runners. Results (Tune's progress.csv, result.json,
TensorBoard events) and checkpoints go to --results-dir, by default the run's
folder that start_ray made under logs/ (else logs/<time>-<algo>). SIGTERM,
SIGINT and SIGUSR1 (a walltime warning) make it save a checkpoint after the
current iteration and exit cleanly; resume with --restore CHECKPOINT. A lost
node costs the env runners on it (RLlib restarts them once start_ray has
brought the node back) or, when the algorithm's own actor was there, the
trial: Tune restarts it from its last checkpoint (--max-failures).

Training longer than one job: give every job the same --experiment-dir and it
continues from the newest complete checkpoint there (--resume auto, the
default), iterations, env steps, progress.csv and TensorBoard going on as one
run; the stop criteria count over the whole chain (drivers/rl_chain.py). In a
chain of jobs (jobs/slurm_chain.sbatch) the folder is chains/ppo-<first job
id> by default, and a link stopped by a signal before its criterion exits 75
(the chain goes on); at the criterion it exits 0 (the chain ends).

Every option can also come from the environment, as PPO_<OPTION>
(PPO_STOP_ITERS=500): the batch scripts in jobs/ set those for this driver.

Output: one line per iteration; --verbose brings back Tune's tables.

tf2 runs on RLlib's old API stack (the new one is PyTorch only) with
tf_keras and TF_USE_LEGACY_KERAS=1, set here for this process and for every
Ray worker of the job; torch runs on the new API stack.
"""

import os
import sys

# Before anything imports TensorFlow, here and (through the runtime env below)
# in every Ray worker: RLlib's TF code needs Keras 2.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
# Our own handlers decide what SIGINT means (checkpoint, then exit).
os.environ.setdefault("TUNE_DISABLE_SIGINT_HANDLER", "1")
# One line per iteration unless --verbose: TensorFlow's start-up lines and
# Tune's tables off before either is imported (the workers: see main()).
if "--verbose" not in sys.argv[1:] and os.environ.get("PPO_VERBOSE", "").lower() not in (
        "1", "true", "yes", "on"):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # its verbose=0 is silent

import argparse  # noqa: E402
import importlib.util  # noqa: E402
import logging  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from typing import Any, Dict, List, Optional, Tuple  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rl_chain  # noqa: E402
import rl_envs  # noqa: E402
import rl_state  # noqa: E402
import rl_versions  # noqa: E402
from rl_metrics import RETURN_KEYS, STEP_KEYS  # noqa: E402

from start_ray.mpi import launch_env  # noqa: E402  (the batch job's id names a chain's links)

FRAMEWORK_PACKAGES = {"tf2": ("tensorflow", "tf_keras"), "torch": ("torch",)}
NOT_DONE = 75  # a chain's "not done yet" (start_ray.chain)
DEFAULT_ITERS = 200  # the stop when none is given (with the env's reward threshold)


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add = parser.add_argument
    add("--run", default="PPO", help="RLlib algorithm (default: %(default)s)")
    add("--env", default="CartPole-v1",
        help="a gymnasium id, or one of drivers/rl_envs: "
             + ", ".join(rl_envs.ENVIRONMENTS) + " (default: %(default)s)")
    add("--framework", choices=sorted(FRAMEWORK_PACKAGES), default="tf2",
        help="tf2 (old API stack) or torch (new API stack) (default: %(default)s)")
    add("--num-env-runners", type=int, default=None,
        help="default: the cluster's CPUs minus one (one for the learner)")
    add("--num-gpus", type=float, default=0, help="GPUs for the learner (default: 0)")
    add("--lr", type=float, default=3e-4, help="learning rate (default: %(default)s)")
    add("--train-batch-size", type=int, default=4000,
        help="environment steps per training iteration (default: %(default)s)")
    add("--minibatch-size", type=int, default=128, help="(default: %(default)s)")
    add("--num-epochs", type=int, default=10,
        help="SGD passes over each batch (default: %(default)s)")
    add("--hidden", default="256,256",
        help="hidden layer sizes of the policy and value networks (default: %(default)s)")
    add("--stop-iters", type=int, default=None, help="stop after this many iterations")
    add("--stop-timesteps", type=int, default=None, help="stop after this many env steps")
    add("--stop-reward", type=float, default=None,
        help="stop once the mean episode return reaches this")
    add("--checkpoint-frequency", type=int, default=5,
        help="checkpoint every N iterations, and always at the end (default: %(default)s)")
    add("--max-failures", type=int, default=3,
        help="restart the training from its last checkpoint when it fails (e.g. the "
             "node of its main actor was lost; start_ray brings the node back), at "
             "most N times; 0: never, -1: always (default: %(default)s)")
    add("--checkpoint-to-keep", type=int, default=3,
        help="keep the N best checkpoints by mean episode return (default: %(default)s)")
    add("--results-dir", default=None,
        help="default: $START_RAY_RUN_DIR (the start_ray run folder), else logs/")
    add("--restore", default=None, metavar="CHECKPOINT",
        help="continue from this checkpoint (its iteration count goes on)")
    add("--experiment-dir", default=None, metavar="DIR",
        help="a folder that stays the same from job to job: each job continues the "
             "training there (see --resume)")
    add("--resume", choices=("auto", "never"), default="auto",
        help="with --experiment-dir: auto continues from its newest complete "
             "checkpoint (an empty folder starts fresh); never starts fresh "
             "(default: %(default)s)")
    add("--verbose", action="store_true",
        help="Tune's progress tables and every worker's start-up logs, instead of "
             "one line per iteration")
    add("--seed", type=int, default=None, help="random seed")
    add("--ray-address", default=None,
        help="cluster address (default: RAY_ADDRESS, as start_ray sets it)")
    add("--name", default=None, help="experiment name (default: <algo>_<env>_<framework>)")
    defaults_from_environment(parser)
    args = parser.parse_args(argv)
    if all(criterion is None for criterion in (args.stop_iters, args.stop_timesteps,
                                                 args.stop_reward)):
        default_stop(args)  # a given 0 is a criterion too (--stop-reward 0)
    chain_id = os.environ.get("START_RAY_CHAIN_ID")
    if chain_id and not args.experiment_dir and not args.restore:  # a link of a chain
        args.experiment_dir = os.path.join("chains", f"ppo-{chain_id}")
    if args.restore and args.experiment_dir:
        parser.error("--restore and --experiment-dir: give one (the experiment folder "
                     "finds its own checkpoint)")
    try:
        args.hidden = [int(size) for size in args.hidden.split(",")]
    except ValueError:
        parser.error(f"--hidden {args.hidden!r}: expected sizes like 256,256")
    return args


def default_stop(args: argparse.Namespace) -> None:
    """No stop criterion given: the environment's own "solved" return (its
    reward_threshold, 475 for CartPole-v1), or DEFAULT_ITERS iterations,
    whichever comes first."""
    args.stop_iters = DEFAULT_ITERS
    try:
        import gymnasium
        args.stop_reward = gymnasium.spec(args.env).reward_threshold
    except Exception:  # not a gymnasium id (one of rl_envs), or no threshold
        args.stop_reward = None
    print(f"train_ppo.py: no stop criterion given: stopping after {DEFAULT_ITERS} "
          "iterations" + (f" or at a mean return of {args.stop_reward:g} (the "
                          f"environment's reward threshold)" if args.stop_reward else "")
          + "; --stop-iters, --stop-timesteps, --stop-reward choose", flush=True)


def defaults_from_environment(parser: argparse.ArgumentParser) -> None:
    """Every option's default from PPO_<OPTION> if set (PPO_STOP_ITERS=500
    for --stop-iters 500): batch scripts set these for this driver alone, and
    any other driver ignores them."""
    for action in parser._actions:
        name = "PPO_" + action.dest.upper()
        if not action.option_strings or name not in os.environ:
            continue
        text = os.environ[name]
        if action.nargs == 0:  # a flag
            parser.set_defaults(**{action.dest: text.lower() in ("1", "true", "yes", "on")})
        else:
            parser.set_defaults(**{action.dest: text})  # argparse applies its type


def fail(message: str) -> None:
    """Bad input: one line, exit status 2, before anything starts."""
    print(f"train_ppo.py: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def check_framework(framework: str) -> None:
    unsupported = rl_versions.problem(framework)
    if unsupported:
        fail(unsupported)
    missing = [p for p in FRAMEWORK_PACKAGES[framework] if importlib.util.find_spec(p) is None]
    if missing:
        install = "tensorflow tf_keras" if framework == "tf2" else "torch"
        fail(f"--framework {framework} needs {', '.join(missing)}, which this Python "
             f"does not have: pip install {install}")


def check_env(name: str) -> None:
    import gymnasium as gym

    if name not in rl_envs.ENVIRONMENTS and name not in gym.registry:
        fail(f"unknown environment {name!r}: use a gymnasium id (e.g. CartPole-v1) "
             f"or one of {', '.join(rl_envs.ENVIRONMENTS)}")


def first(result: Dict[str, Any], keys) -> Optional[float]:
    """The first of `keys` present in a (possibly nested) Tune result."""
    for key in keys:
        value: Any = result
        for part in key.split("/"):
            value = value.get(part) if isinstance(value, dict) else None
        if value is not None:
            return float(value)
    return None


# Stop requests (signal numbers), from the first line of main() on: a signal
# that arrives while Ray and Tune start (a walltime warning, scancel) must
# not kill the driver before it can save anything.
STOP_REQUESTS: List[int] = []


def catch_early_signals() -> None:
    """Until Tune is up, only remember a stop request; the first iteration's
    result then stops the trial with a checkpoint. Again once Tune is done:
    a second walltime warning must not kill the driver while it finishes."""
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1):
        signal.signal(signum, lambda signum, frame: STOP_REQUESTS.append(signum))


def raylet_alive() -> bool:
    """Whether this driver's Ray node (its raylet's socket) still answers."""
    import socket as sockets

    from ray._private import worker
    path = getattr(getattr(worker, "_global_node", None), "raylet_socket_name", None)
    if not path:
        return True  # cannot tell: as if it were
    probe = sockets.socket(sockets.AF_UNIX, sockets.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(path)
        return True
    except OSError:
        return False
    finally:
        probe.close()


def give_up_if_the_cluster_is_gone(checks: int = 6, interval: float = 0.5) -> None:
    """A stop that comes because the cluster went away (start_ray stops the
    job when its head is lost, and starts it again under --restarts): the
    iteration under way can never finish, so waiting for it costs the stop
    timeout. Watch this driver's own Ray node for a few seconds; once it is
    gone, exit at once, "not done" (75): the last checkpoint is the resume
    point (--experiment-dir finds it)."""
    import threading

    def watch() -> None:
        for _ in range(checks):
            if not raylet_alive():
                print("train_ppo.py: this driver's Ray node is gone: the iteration cannot "
                      "finish; exiting now, not done (the last checkpoint is the resume "
                      "point)", flush=True)
                sys.stdout.flush()
                os._exit(NOT_DONE)
            time.sleep(interval)
    threading.Thread(target=watch, daemon=True).start()


def make_stopper(iters: Optional[int], timesteps: Optional[int], reward: Optional[float]):
    """A Tune stopper for the stop criteria, which also stops the trial
    (checkpointed at the end) once SIGTERM, SIGINT or SIGUSR1 arrived, and the
    Tune callback that installs its signal handlers. The handlers go in from
    the callback's setup because tune.run() installs its own SIGUSR1 handler
    (which would end the run without a trial checkpoint) just before that."""
    from ray import tune

    class Stopper(tune.Stopper):
        @property
        def signal(self) -> Optional[int]:
            return STOP_REQUESTS[0] if STOP_REQUESTS else None

        def met(self, result: Dict[str, Any]) -> Optional[str]:
            """Which stop criterion `result` meets (over a whole chain: the
            iteration and step counts go on from job to job), if any."""
            steps, ret = first(result, STEP_KEYS), first(result, RETURN_KEYS)
            if iters and result.get("training_iteration", 0) >= iters:
                return f"--stop-iters {iters} reached"
            if timesteps and steps is not None and steps >= timesteps:
                return f"--stop-timesteps {timesteps} reached"
            if reward is not None and ret is not None and ret >= reward:
                return f"--stop-reward {reward:g} reached"
            return None

        def __call__(self, trial_id: str, result: Dict[str, Any]) -> bool:
            return self.signal is not None or self.met(result) is not None

        def stop_all(self) -> bool:
            return False

        def on_signal(self, signum: int, frame: Any) -> None:
            if self.signal is None:
                print(f"train_ppo.py: got {signal.Signals(signum).name}: saving a checkpoint "
                      "after this iteration, then exiting", flush=True)
                if signum == signal.SIGTERM:
                    give_up_if_the_cluster_is_gone()
            STOP_REQUESTS.append(signum)

    stopper = Stopper()

    class CatchSignals(tune.Callback):
        def setup(self, **info: Any) -> None:
            if STOP_REQUESTS:
                print(f"train_ppo.py: got {signal.Signals(STOP_REQUESTS[0]).name} while "
                      "starting: stopping after the first iteration, with a checkpoint",
                      flush=True)
            for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1):
                signal.signal(signum, stopper.on_signal)

    return stopper, CatchSignals()


def progress_line(it: int, steps: float, ret: Optional[float], args: argparse.Namespace,
                  elapsed: float, pace: Optional[Tuple[float, float]]) -> str:
    """`iteration 12/200, 48000 env steps (1250/s), mean return 45.2 (target
    475), elapsed 0:38, ETA 10:12`: where training stands against its stop
    criteria, and how fast it goes. `pace`: (seconds an iteration, env steps
    a second) in this job so far (None after its first iteration)."""
    etas = []
    if pace and args.stop_iters:
        etas.append((args.stop_iters - it) * pace[0])
    if pace and args.stop_timesteps and pace[1] > 0:
        etas.append((args.stop_timesteps - steps) / pace[1])
    target = f" (target {args.stop_reward:g})" if args.stop_reward is not None else ""
    return (f"iteration {it}" + (f"/{args.stop_iters}" if args.stop_iters else "") +
            f", {int(steps)} env steps" +
            (f"/{args.stop_timesteps}" if args.stop_timesteps else "") +
            (f" ({pace[1]:.0f}/s)" if pace else "") + ", mean return " +
            (f"{ret:.1f}" if ret is not None else "n/a") + target +
            f", elapsed {clock(elapsed)}" +
            (f", ETA {clock(max(0.0, min(etas)))}" if etas else ""))


def clock(seconds: float) -> str:
    """`1:02:03` or `2:03`."""
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def progress_callback(args: argparse.Namespace, chain: Optional[str], link: str,
                      first_iteration: int):
    """A Tune callback: one line per iteration (unless --verbose), and for a
    chained experiment its progress.csv, TensorBoard run and checkpoint record."""
    from ray import tune

    class Progress(tune.Callback):
        def setup(self, **info: Any) -> None:
            self.board = None
            self.began = time.monotonic()
            # this job's first result: (iteration, env steps, when)
            self.first: Optional[Tuple[int, float, float]] = None
            self.last = first_iteration - 1  # the last iteration recorded
            if chain:
                from tensorboardX import SummaryWriter
                self.board = SummaryWriter(os.path.join(chain, "tensorboard"),
                                           purge_step=first_iteration)

        def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
            it = int(result.get("training_iteration", 0))
            steps, ret = first(result, STEP_KEYS), first(result, RETURN_KEYS)
            seconds = float(result.get("time_this_iter_s") or 0)
            now, total = time.monotonic(), float(steps or 0)
            pace = None
            if self.first is None:
                self.first = (it, total, now)
            elif it > self.first[0] and now > self.first[2]:
                pace = ((now - self.first[2]) / (it - self.first[0]),
                        (total - self.first[1]) / (now - self.first[2]))
            if not args.verbose:
                print("train_ppo.py: " + progress_line(it, total, ret, args, now - self.began,
                                                       pace), flush=True)
            if chain:
                if it <= self.last:  # Tune restarted the trial (--max-failures)
                    rl_chain.truncate_progress(chain, it - 1)
                self.last = it
                rl_chain.append_progress(chain, link, {
                    "training_iteration": it, STEP_KEYS[0]: steps, RETURN_KEYS[0]: ret,
                    "time_this_iter_s": seconds, "timestamp": result.get("timestamp")})
            if self.board is not None:
                if ret is not None:
                    self.board.add_scalar("episode_return_mean", ret, it)
                if steps is not None:
                    self.board.add_scalar("env_steps", steps, it)
                self.board.flush()

        def on_checkpoint(self, iteration, trials, trial, checkpoint, **info) -> None:
            if chain:
                done = int((trial.last_result or {}).get("training_iteration", 0))
                rl_chain.add_checkpoint(chain, checkpoint.path, done)

        def on_experiment_end(self, trials, **info) -> None:
            if self.board is not None:
                self.board.close()

    return Progress()


def placement_callbacks(path: str):
    """RLlib callbacks recording where each env runner's environment lives."""
    def record(env_runner: Any) -> None:
        import ray
        node = ray.get_runtime_context().get_node_id()
        with open(path, "a") as handle:
            handle.write(f"{node} {socket.gethostname()} {os.getpid()}\n")

    class RecordPlacement(rl_versions.callback_base()):  # type: ignore[misc]
        def on_environment_created(self, *, env_runner, **kwargs):  # new stack
            record(env_runner)

        def on_sub_environment_created(self, *, worker, **kwargs):  # old stack
            record(worker)

    return RecordPlacement


def build_config(args: argparse.Namespace, runners: int, placement_file: str):
    from ray.tune.registry import get_trainable_cls

    config = get_trainable_cls(args.run).get_default_config()
    if args.framework == "tf2":
        config = config.api_stack(enable_rl_module_and_learner=False,
                                  enable_env_runner_and_connector_v2=False)
        config = config.training(model={"fcnet_hiddens": args.hidden})
    else:
        from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig
        config = config.rl_module(model_config=DefaultModelConfig(fcnet_hiddens=args.hidden))
    config = (config.framework(args.framework)
              .environment(args.env)
              .env_runners(num_env_runners=runners)
              .training(lr=args.lr, train_batch_size=args.train_batch_size,
                        minibatch_size=args.minibatch_size, num_epochs=args.num_epochs)
              .callbacks(placement_callbacks(placement_file))
              .debugging(seed=args.seed))
    if args.num_gpus:
        if args.framework == "tf2":
            config = config.resources(num_gpus=args.num_gpus)
        else:
            config = config.learners(num_gpus_per_learner=args.num_gpus)
    return config


STATE_DIR = "START_RAY_STATE_DIR"  # where a restored trial records its state


def carrying_everything(run: str) -> type:
    """The algorithm, saving beside each checkpoint what RLlib does not save
    itself (PPO's KL coefficient on the new API stack, the schedules' current
    values, the tf2 optimizer's moments, the random generators), and putting
    it back after RLlib's own restore: a chain trains as one run
    (drivers/rl_state.py; `python drivers/rl_state.py EXPERIMENT` checks it)."""
    from ray.tune.registry import get_trainable_cls
    base = get_trainable_cls(run)

    def save_checkpoint(self, checkpoint_dir: str):
        result = base.save_checkpoint(self, checkpoint_dir)
        rl_state.save(self, checkpoint_dir)
        return result

    def load_checkpoint(self, checkpoint_dir: str):
        result = base.load_checkpoint(self, checkpoint_dir)
        rl_state.restore(self, checkpoint_dir, os.environ.get(STATE_DIR))
        return result

    return type(base.__name__, (base,), {"save_checkpoint": save_checkpoint,
                                         "load_checkpoint": load_checkpoint})


def results_dir(args: argparse.Namespace) -> str:
    if args.results_dir:
        return os.path.abspath(args.results_dir)
    if os.environ.get("START_RAY_RUN_DIR"):
        return os.path.join(os.environ["START_RAY_RUN_DIR"], "results")
    return os.path.abspath(os.path.join("logs", time.strftime("%Y%m%d-%H%M%S-") + args.run))


def resume_point(args: argparse.Namespace) -> Tuple[Optional[str], Optional[str], int]:
    """(experiment folder or None, checkpoint to restore, its iteration).
    A chain already at --stop-iters ends here (exit 0): nothing to train."""
    if not args.experiment_dir:
        return None, args.restore, 0
    chain = os.path.abspath(args.experiment_dir)
    os.makedirs(chain, exist_ok=True)
    restore, resumed_at, skipped = (rl_chain.resume_point(chain) if args.resume == "auto"
                                    else (None, 0, []))
    for warning in skipped:
        print(f"train_ppo.py: warning: {warning}", flush=True)
    if args.stop_iters and resumed_at >= args.stop_iters:  # e.g. a link queued twice
        print(f"train_ppo.py: experiment {chain}: already at iteration {resumed_at} "
              f"(--stop-iters {args.stop_iters}): nothing to do", flush=True)
        rl_chain.finish_link(chain, done=True, iteration=resumed_at,
                             why=f"--stop-iters {args.stop_iters} reached")
        raise SystemExit(0)
    return chain, restore, resumed_at


def main(argv: Optional[List[str]] = None) -> int:
    catch_early_signals()
    args = parse_args(argv)
    check_framework(args.framework)
    check_env(args.env)
    import ray
    from ray import tune

    chain, restore, resumed_at = resume_point(args)
    quiet = {} if args.verbose else {"TF_CPP_MIN_LOG_LEVEL": "2"}  # TF's start-up lines
    if not args.verbose:
        warnings.filterwarnings("ignore", category=UserWarning, module=r"gymnasium\b.*")
        logging.getLogger("ray.tune").setLevel(logging.WARNING)
    if chain:
        where = os.path.join(chain, "links")
        name = rl_chain.start_link(chain, launch_env.job_id(), restore, resumed_at)
    else:
        where = results_dir(args)
        name = args.name or f"{args.run}_{args.env}_{args.framework}"
    ray.init(address=args.ray_address, log_to_driver=args.verbose,
             logging_level=logging.INFO if args.verbose else logging.WARNING, runtime_env={
        "py_modules": [rl_envs],
        "env_vars": {"TF_USE_LEGACY_KERAS": "1", STATE_DIR: os.path.join(where, name),
                     **quiet},
    })
    rl_envs.register_all()
    cpus = int(ray.cluster_resources().get("CPU", 1))
    runners = args.num_env_runners if args.num_env_runners is not None else max(0, cpus - 1)
    if chain:
        print(f"train_ppo.py: experiment {chain}: link {name}, "
              + (f"resuming after iteration {resumed_at} from {restore}" if restore
                 else "starting fresh"), flush=True)
    os.makedirs(where, exist_ok=True)
    placement_file = os.path.join(where, f"{name}.placement.txt")
    print(f"train_ppo.py: {args.run} on {args.env} with {args.framework}, "
          f"{runners} env runner(s) on a cluster of {len(ray.nodes())} node(s) / {cpus} CPU(s); "
          f"results in {os.path.join(where, name)}", flush=True)

    stopper, catch_signals = make_stopper(args.stop_iters, args.stop_timesteps,
                                          args.stop_reward)
    analysis = tune.run(
        carrying_everything(args.run), config=build_config(args, runners, placement_file),
        stop=stopper,
        callbacks=[catch_signals, progress_callback(args, chain, name, resumed_at + 1)],
        storage_path=where, name=name, restore=restore, verbose=1 if args.verbose else 0,
        checkpoint_config=rl_versions.checkpoint_config()(
            checkpoint_frequency=args.checkpoint_frequency, checkpoint_at_end=True,
            num_to_keep=args.checkpoint_to_keep,
            checkpoint_score_attribute=RETURN_KEYS[0],
            checkpoint_score_order="max"),
        max_failures=args.max_failures, raise_on_failed_trial=False)
    catch_early_signals()
    trial = analysis.trials[0]
    last = trial.last_result or {}
    checkpoint = trial.checkpoint.path if trial.checkpoint else None
    met = stopper.met(last) if trial.status == "TERMINATED" else None
    print(f"train_ppo.py: {trial.status} after {last.get('training_iteration')} iteration(s), "
          f"{first(last, STEP_KEYS)} env steps, mean return {first(last, RETURN_KEYS)}",
          flush=True)
    print(f"train_ppo.py: results: {trial.path}", flush=True)
    print(f"train_ppo.py: last checkpoint: {checkpoint}", flush=True)
    if chain:
        why = met or (f"stopped by {signal.Signals(stopper.signal).name}"
                      if stopper.signal is not None else f"trial {trial.status}")
        rl_chain.finish_link(chain, done=met is not None, why=why,
                             iteration=last.get("training_iteration"))
        print(f"train_ppo.py: experiment {chain}: "
              + ("done: " + met if met else f"not done ({why}); the next job with the same "
                 "--experiment-dir continues it"), flush=True)
    elif stopper.signal is not None:
        print(f"train_ppo.py: resume with --restore {checkpoint}", flush=True)
    if trial.status != "TERMINATED":
        return 1
    # A link of a chain stopped by a signal before its criterion: not done,
    # whatever the signal was (the chain's contract: 75 goes on).
    return NOT_DONE if chain and met is None and stopper.signal is not None else 0


if __name__ == "__main__":
    sys.exit(main())
