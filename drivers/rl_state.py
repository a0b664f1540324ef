"""The whole state of an RLlib algorithm, as it lives in its processes, so
that a chain of jobs can show it trains as one run: what crosses a link.

RLlib's checkpoint holds what RLlib chose to save. A check that read the
state through RLlib's own get_state() would share its blind spots (in
Ray 2.60 the new API stack's Learner saves its module, optimizers and
metrics, and not PPO's adaptive KL coefficient: ray#22444 of old). So
`snapshot()` reads the live objects instead, in every process that holds a
piece: the learners (their module's weights, optimizer moments, the KL
coefficient, the entropy and learning-rate schedules), the algorithm's
lifetime counters, the old stack's window of episodes its mean return is
taken over, the env runners' connectors and filters, and the random number
generators where a seed is set. Each piece is a number, or a digest of its
arrays. (Not the env runners' weights: Ray 2.40 gives them the learner's at
the next iteration's start, so at a save they are one update behind by
design; put_back gives them the learner's at once.)

`extra()` is what RLlib does not save itself, for the driver to save beside
each checkpoint; `put_back()` restores it after RLlib's own restore.
`compare()` lists what differs between two snapshots, and

    python drivers/rl_state.py EXPERIMENT_DIR

checks every link of a chained experiment (train_ppo.py --experiment-dir):
the state saved with the checkpoint a link resumed from, against the state
just after that link restored it.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import sys
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

try:  # the functions below run in RLlib's actors too, which cannot import this file
    from ray import cloudpickle
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
except (ImportError, AttributeError, ValueError):
    pass

SAVED = "start_ray_state.json"          # in a checkpoint: the snapshot at the save
EXTRA = "start_ray_extra.pkl"           # in a checkpoint: what RLlib does not save
RESTORED = "start_ray_restored.json"    # in the trial folder: the snapshot after restore
# Pieces that differ across a link by design, and why (compare() reports
# them apart from what differs).
EXPECTED = {
    "env_rng/": "an episode in flight is cut at a link: each environment starts anew",
}


# ------------------------------------------------------------- the pieces
def digest(value: Any) -> str:
    """A short digest of arrays (numpy, torch, tf) nested in dicts and lists."""
    sha = hashlib.sha256()

    def feed(item: Any) -> None:
        if isinstance(item, dict):
            for key in sorted(item, key=str):
                sha.update(str(key).encode())
                feed(item[key])
        elif isinstance(item, (list, tuple)):
            for part in item:
                feed(part)
        else:
            array = _numpy(item)
            if array is not None:
                sha.update(str(array.dtype).encode() + str(array.shape).encode())
                sha.update(array.tobytes())
            else:
                sha.update(repr(item).encode())
    feed(value)
    return sha.hexdigest()[:16]


def _numpy(item: Any):
    import numpy
    if isinstance(item, numpy.ndarray):
        return numpy.ascontiguousarray(item)
    if hasattr(item, "detach"):  # torch
        return item.detach().cpu().numpy()
    if hasattr(item, "numpy") and callable(item.numpy):  # tf
        try:
            return numpy.asarray(item.numpy())
        except Exception:
            return None
    return None


def number(value: Any) -> float:
    """A scalar tensor, variable or number as a float."""
    array = _numpy(value)
    if array is not None:
        return float(array.reshape(-1)[0])
    if hasattr(value, "item"):
        return float(value.item())
    return float(value)


def flat(nested: Any, prefix: str = "") -> Dict[str, Any]:
    """{"a/b": leaf} of a nested dict."""
    if not isinstance(nested, dict):
        return {prefix: nested}
    out: Dict[str, Any] = {}
    for key, value in nested.items():
        out.update(flat(value, f"{prefix}/{key}" if prefix else str(key)))
    return out


def _keys(nested: Any) -> Iterable[str]:
    """Every key of a nested dict, at every level."""
    if isinstance(nested, dict):
        for key, value in nested.items():
            yield str(key)
            yield from _keys(value)


def rng_state() -> Dict[str, str]:
    """The process's random generators (Python, numpy, torch when loaded)."""
    import numpy
    state = {"python": digest(repr(random.getstate())),
             "numpy": digest(list(numpy.random.get_state()))}
    if "torch" in sys.modules:
        state["torch"] = digest(sys.modules["torch"].get_rng_state())
    return state


# ------------------------------------------------ the new API stack (torch)
def _coefficients(learner: Any) -> Dict[str, Any]:
    """PPO's adaptive KL coefficient per module (made at first use)."""
    coefficients = getattr(learner, "curr_kl_coeffs_per_module", None)
    if coefficients is None:
        return {}
    return {f"kl_coeff/{module_id}": coefficients[module_id]
            for module_id in learner.module.keys()}


def _schedulers(learner: Any) -> Dict[str, Any]:
    """The learner's schedules (entropy coefficient, learning rate), by name:
    each holds its current value, used until its next update."""
    found = {}
    entropy = getattr(learner, "entropy_coeff_schedulers_per_module", None)
    if entropy is not None:
        found.update({f"entropy_coeff/{module_id}": entropy[module_id]
                      for module_id in learner.module.keys()})
    names = {id(optimizer): name for name, optimizer in
             getattr(learner, "_named_optimizers", {}).items()}
    for optimizer, scheduler in getattr(learner, "_optimizer_lr_schedules", {}).items():
        found[f"lr/{names.get(id(optimizer), type(optimizer).__name__)}"] = scheduler
    return found


def _set(holder: Any, value: float) -> None:
    """Set a torch or tf variable, or a plain number, in place."""
    if hasattr(holder, "data") and hasattr(holder.data, "fill_"):
        holder.data.fill_(value)
    elif hasattr(holder, "assign"):
        holder.assign(value)
    else:
        raise TypeError(type(holder).__name__)


def _optimizer_piece(name: str, value: Any) -> Dict[str, Any]:
    """An optimizer's moments as a digest; its hyperparameters (torch's
    param_groups: lr, betas, eps...) as numbers, compared within float32's
    precision (Ray 2.52's restore rounds them to float32)."""
    if isinstance(value, list) and value and all(isinstance(g, dict) for g in value):
        found: Dict[str, Any] = {}
        for index, group in enumerate(value):
            for key, item in group.items():
                items = item if isinstance(item, (list, tuple)) else [item]
                if key != "params" and items and all(
                        isinstance(i, (int, float)) and not isinstance(i, bool) for i in items):
                    for place, number_ in enumerate(items):
                        found[f"{name}/{index}/{key}/{place}"] = float(number_)
                else:
                    found[f"{name}/{index}/{key}"] = digest(item)
        return found
    return {name: digest(value)}


def _learner_pieces(learner: Any) -> Dict[str, Any]:
    """One Learner's live state (run inside its process)."""
    pieces: Dict[str, Any] = {}
    for name, value in flat(learner.module.get_state()).items():
        pieces[f"learner/module/{name}"] = digest(value)
    for name, value in flat(learner._get_optimizer_state()).items():
        pieces.update(_optimizer_piece(f"learner/optimizer/{name}", value))
    for name, value in _coefficients(learner).items():
        pieces[f"learner/{name}"] = number(value)
    for name, scheduler in _schedulers(learner).items():
        pieces[f"learner/{name}"] = number(scheduler.get_current_value())
    pieces["learner/weights_seq_no"] = int(getattr(learner, "_weights_seq_no", 0))
    for name, value in flat(learner.metrics.peek(()) or {}).items():
        if name.endswith("_lifetime"):
            pieces[f"learner/metrics/{name}"] = number(value)
    if learner.config.seed is not None:
        pieces.update({f"rng/learner/{k}": v for k, v in rng_state().items()})
    return pieces


def _env_runner_pieces(runner: Any) -> Dict[str, Any]:
    """An EnvRunner's connectors (and their filters) and generators."""
    pieces: Dict[str, Any] = {}
    for name in ("_env_to_module", "_module_to_env", "env_to_module", "module_to_env"):
        connector = getattr(runner, name, None)
        if connector is not None and hasattr(connector, "get_state"):
            pieces[f"connector/{name.strip('_')}"] = digest(connector.get_state())
    if runner.config.seed is not None:
        pieces.update({f"rng/{k}": v for k, v in rng_state().items()})
        vector = getattr(getattr(runner, "env", None), "unwrapped", None)
        for index, env in enumerate(getattr(vector, "envs", [])):
            generator = getattr(getattr(env, "unwrapped", env), "np_random", None)
            if generator is not None:
                pieces[f"env_rng/{index}"] = digest(repr(generator.bit_generator.state))
    return pieces


def _each_learner(algorithm: Any, function: Callable[[Any], Any]) -> List[Any]:
    """`function` run on each learner, in its process: what each returned
    (RLlib wraps a result in a ResultOrError, whose get() gives it)."""
    return [result.get() if hasattr(result, "ok") else result
            for result in algorithm.learner_group.foreach_learner(function)]


def _new_stack(algorithm: Any) -> Dict[str, Any]:
    pieces: Dict[str, Any] = {}
    for index, learner in enumerate(_each_learner(algorithm, _learner_pieces)):
        result = learner
        pieces.update({key.replace("learner/", f"learner{index}/", 1): value
                       for key, value in result.items()})
    for name, value in flat(algorithm.metrics.peek(()) or {}).items():
        if name.endswith("_lifetime"):
            pieces[f"metrics/{name}"] = number(value)
    runners = _each_runner(algorithm, _env_runner_pieces)
    for index, runner in enumerate(runners):
        pieces.update({f"env_runner{index}/{k}": v for k, v in runner.items()})
    pieces["training_iteration"] = int(algorithm.training_iteration)
    return pieces


# ------------------------------------------------ the old API stack (tf2)
def _policy_pieces(policy: Any) -> Dict[str, Any]:
    pieces: Dict[str, Any] = {"weights": digest(policy.get_weights()),
                              "optimizer": digest(_optimizer_variables(policy))}
    for name in ("kl_coeff", "kl_coeff_val", "cur_lr", "entropy_coeff", "global_timestep"):
        if hasattr(policy, name):
            try:
                pieces[name] = number(getattr(policy, name))
            except (TypeError, ValueError):
                pass
    return pieces


def _old_worker_pieces(worker: Any) -> Dict[str, Any]:
    pieces: Dict[str, Any] = {}
    for policy_id, filt in (worker.filters or {}).items():
        pieces[f"filter/{policy_id}"] = digest(repr(filt.as_serializable().__dict__)
                                               if hasattr(filt, "as_serializable") else repr(filt))
    if worker.config.seed is not None:
        pieces.update({f"rng/{k}": v for k, v in rng_state().items()})
    return pieces


def _old_stack(algorithm: Any) -> Dict[str, Any]:
    pieces: Dict[str, Any] = {}
    for policy_id, policy in _local_policies(algorithm).items():
        pieces.update({f"policy/{policy_id}/{k}": v for k, v in _policy_pieces(policy).items()})
    for name, value in dict(getattr(algorithm, "_counters", {})).items():
        pieces[f"counters/{name}"] = number(value)
    history = list(getattr(algorithm, "_episode_history", []))
    pieces["episodes/for_the_mean"] = f"{len(history)} episodes, {digest(repr(history))}"
    runners = _each_runner(algorithm, _old_worker_pieces)
    for index, runner in enumerate(runners):
        pieces.update({f"env_runner{index}/{k}": v for k, v in runner.items()})
    pieces["training_iteration"] = int(algorithm.training_iteration)
    return pieces


def snapshot(algorithm: Any) -> Dict[str, Any]:
    """Every piece of the algorithm's live state, by name."""
    if algorithm.config.enable_rl_module_and_learner:
        return _new_stack(algorithm)
    return _old_stack(algorithm)


# --------------------------------------- what RLlib does not save itself
def _learner_extra(learner: Any) -> Dict[str, Any]:
    """What RLlib's Learner.get_state leaves out (Ray 2.40 to 2.60): the KL
    coefficients, and the schedules' current values (a schedule is updated
    after each update: a restored one would serve its first update with
    its value at step 0)."""
    saved = list(_keys(learner.get_state(components=())))
    extra: Dict[str, Any] = {}
    if not any("kl_coeff" in key for key in saved):
        extra["coefficients"] = {name: number(value)
                                 for name, value in _coefficients(learner).items()}
    if not any("schedul" in key for key in saved):
        extra["schedulers"] = {name: number(scheduler.get_current_value())
                               for name, scheduler in _schedulers(learner).items()}
    if learner.config.seed is not None:
        extra["rng"] = _rng_save()
    return extra


def _learner_put_back(learner: Any, extra: Dict[str, Any]) -> None:
    coefficients = _coefficients(learner)
    for name, value in extra.get("coefficients", {}).items():
        _set(coefficients[name], value)
    schedulers = _schedulers(learner)
    for name, value in extra.get("schedulers", {}).items():
        scheduler = schedulers[name]
        if isinstance(scheduler._curr_value, (int, float)):
            scheduler._curr_value = value
        else:
            _set(scheduler._curr_value, value)
    if "rng" in extra:
        _rng_load(extra["rng"])


def _runner_extra(runner: Any) -> Dict[str, Any]:
    if runner.config.seed is None:
        return {}
    return {"worker_index": int(runner.worker_index), "rng": _rng_save()}


def _runner_put_back(extras: List[Dict[str, Any]]) -> Callable[[Any], None]:
    by_index = {extra.get("worker_index"): extra for extra in extras}

    def put_back(runner: Any) -> None:
        extra = by_index.get(int(runner.worker_index), {})
        if "rng" in extra:
            _rng_load(extra["rng"])
    return put_back


def _rng_save() -> Dict[str, Any]:
    import numpy
    kind, keys, pos, has_gauss, cached = numpy.random.get_state()
    state: Dict[str, Any] = {"python": repr(random.getstate()),
                             "numpy": [kind, keys.tolist(), pos, has_gauss, cached]}
    if "torch" in sys.modules:
        state["torch"] = sys.modules["torch"].get_rng_state().tolist()
    return state


def _rng_load(state: Dict[str, Any]) -> None:
    import ast

    import numpy
    random.setstate(ast.literal_eval(state["python"]))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    numpy.random.set_state((kind, numpy.array(keys, dtype=numpy.uint32), pos, has_gauss,
                            cached))
    if "torch" in state and "torch" in sys.modules:
        torch = sys.modules["torch"]
        torch.set_rng_state(torch.tensor(state["torch"], dtype=torch.uint8))


def _runners(algorithm: Any) -> Any:
    """The algorithm's env runner group (`workers` before Ray 2.41)."""
    return getattr(algorithm, "env_runner_group", None) or algorithm.workers


def _each_runner(algorithm: Any, function: Callable[[Any], Any]) -> List[Any]:
    """`function` run on every env runner, the local one first, in its
    process: foreach_env_runner since Ray 2.41, foreach_worker before."""
    group = _runners(algorithm)
    if hasattr(group, "foreach_env_runner"):
        return list(group.foreach_env_runner(function, local_env_runner=True))
    try:
        return list(group.foreach_worker(function, local_env_runner=True))
    except TypeError:  # a WorkerSet
        return list(group.foreach_worker(function, local_worker=True))


def _local_policies(algorithm: Any) -> Dict[str, Any]:
    workers = _runners(algorithm)
    local = workers.local_env_runner if hasattr(workers, "local_env_runner") \
        else workers.local_worker()
    return dict(local.policy_map.items())


def _optimizer_of(policy: Any) -> Any:
    return getattr(policy, "_optimizer", None)


def _optimizer_variables(policy: Any) -> List[Any]:
    optimizer = _optimizer_of(policy)
    if optimizer is None:
        return []
    variables = optimizer.variables
    return list(variables() if callable(variables) else variables)


def _put_back_optimizer(policy: Any, values: List[Any], checkpoint: str) -> None:
    """The old stack's tf2 policy restores its optimizer's variables only
    as far as the new optimizer has made them (its Adam moments are made at
    the first update: after a restore only `iterations` came back). Make
    them, then set them all."""
    optimizer = _optimizer_of(policy)
    trainable = policy.model.trainable_variables()
    if len(_optimizer_variables(policy)) < len(values):
        if hasattr(optimizer, "build"):
            optimizer.build(trainable)
        else:
            optimizer._create_all_weights(trainable)
    variables = _optimizer_variables(policy)
    shapes = [tuple(v.shape) for v in variables], [tuple(v.shape) for v in values]
    if shapes[0] != shapes[1]:
        raise RuntimeError(f"checkpoint {checkpoint}: the optimizer's variables "
                           f"{shapes[1]} do not fit this policy's {shapes[0]}")
    for variable, value in zip(variables, values):
        variable.assign(value)


def extra(algorithm: Any) -> Dict[str, Any]:
    """What RLlib does not save of this algorithm, for the checkpoint."""
    if not algorithm.config.enable_rl_module_and_learner:
        # The old stack's policies save their KL coefficient, lr and entropy
        # (their get_state), and their optimizer only in part (above).
        found: Dict[str, Any] = {"optimizers": {
            str(policy_id): [_numpy(v) for v in _optimizer_variables(policy)]
            for policy_id, policy in _local_policies(algorithm).items()
            if algorithm.config.framework_str == "tf2"},
            # the last episodes the reported mean return is taken over (RLlib
            # keeps metrics_num_episodes_for_smoothing of them, unsaved: a
            # restored run's mean was over its new episodes alone)
            "episode_history": list(getattr(algorithm, "_episode_history", []))}
        if algorithm.config.seed is not None:
            found["rng"] = _rng_save()
            found["env_runners"] = _each_runner(algorithm, _runner_extra)
        return found
    learners = _each_learner(algorithm, _learner_extra)
    runners = _each_runner(algorithm, _runner_extra)
    return {"learners": learners, "env_runners": list(runners)}


def needed(algorithm: Any) -> List[str]:
    """The pieces a checkpoint's extra state must hold for this algorithm."""
    wanted = extra(algorithm)
    names = []
    for index, learner in enumerate(wanted.get("learners", [])):
        names += [f"learner{index}/{piece}" for piece in learner]
    names += [f"optimizers/{policy_id}" for policy_id in wanted.get("optimizers", {})]
    names += [piece for piece in WHOLE_PIECES if piece in wanted]
    return names


# Pieces of the extra state saved whole, not per learner or policy.
WHOLE_PIECES = ("episode_history", "rng")
# How long the env runners may take to get the learner's weights at a restore.
SYNC_TIMEOUT = 60.0


def put_back(algorithm: Any, saved: Optional[Dict[str, Any]], checkpoint: str) -> None:
    """Restore what RLlib did not; a checkpoint without a piece this
    algorithm needs is refused, naming the piece."""
    missing = [piece for piece in needed(algorithm)
               if not _has(saved or {}, piece)]
    if missing:
        raise RuntimeError(
            f"checkpoint {checkpoint} lacks {', '.join(missing)} ({EXTRA} "
            f"{'has not them' if saved else 'is missing'}): it was saved without them (an "
            "older train_ppo.py), and resuming from it would silently start those pieces "
            "over; start a new experiment, or resume with an older train_ppo.py")
    saved = saved or {}
    if not algorithm.config.enable_rl_module_and_learner:
        policies = _local_policies(algorithm)
        for policy_id, values in saved.get("optimizers", {}).items():
            _put_back_optimizer(policies[policy_id], values, checkpoint)
        if "episode_history" in saved:
            algorithm._episode_history = list(saved["episode_history"])
        if "rng" in saved:
            _rng_load(saved["rng"])
        if saved.get("env_runners"):
            _each_runner(algorithm, _runner_put_back(saved["env_runners"]))
        return
    learners = saved.get("learners", [])
    _each_learner(algorithm,
                  lambda learner: _learner_put_back(learner, learners[0] if learners else {}))
    runners = saved.get("env_runners", [])
    if runners:
        _each_runner(algorithm, _runner_put_back(runners))
    # RLlib's restore leaves the remote env runners acting with other weights
    # than the learner's until the first update (Ray 2.60: a link's first
    # iteration sampled with them); give them the learner's now
    group = getattr(algorithm, "env_runner_group", None)
    if group is not None:
        group.sync_weights(from_worker_or_learner_group=algorithm.learner_group,
                           inference_only=True, timeout_seconds=SYNC_TIMEOUT)


def _has(saved: Dict[str, Any], piece: str) -> bool:
    if piece in WHOLE_PIECES:
        return piece in saved
    if piece.startswith("optimizers/"):
        return piece.split("/", 1)[1] in saved.get("optimizers", {})
    head, _, name = piece.partition("/")
    index = int(head[len("learner"):])
    learners = saved.get("learners", [])
    return index < len(learners) and name in learners[index]


# --------------------------------------------------------------- compare
def compare(before: Dict[str, Any], after: Dict[str, Any]) -> Tuple[List[str], List[str]]:
    """(what differs, what differs by design (EXPECTED)) between a snapshot
    at a save and one after the restore, one line per piece."""
    differs, expected = [], []
    for name in sorted(set(before) | set(after)):
        if name == "training_iteration":
            continue
        old, new = before.get(name, "(absent)"), after.get(name, "(absent)")
        if old == new or (isinstance(old, float) and isinstance(new, float)
                          and abs(old - new) <= 1e-6 * max(1.0, abs(old))):  # float32's
            continue
        line = f"{name}: {old} at the save, {new} after the restore"
        why = next((why for prefix, why in EXPECTED.items() if prefix in name), None)
        (expected if why else differs).append(line + (f" ({why})" if why else ""))
    return differs, expected


def links(experiment: str) -> Iterable[Tuple[str, str, str]]:
    """(link, checkpoint it resumed from, its folder) of each link of a
    chained experiment that resumed (train_ppo.py --experiment-dir)."""
    with open(os.path.join(experiment, "chain.json")) as handle:
        record = json.load(handle)
    for link in record.get("links", []):
        if link.get("resumed_from"):
            yield (link["name"], link["resumed_from"],
                   os.path.join(experiment, "links", link["name"]))


def check(experiment: str) -> int:
    """Print what differs across each link; 1 if anything does (or a link
    recorded no state to compare)."""
    failed, checked = 0, 0
    for name, checkpoint, folder in links(experiment):
        saved_path = os.path.join(checkpoint, SAVED)
        restored_path = os.path.join(folder, RESTORED)
        if not os.path.exists(saved_path) or not os.path.exists(restored_path):
            print(f"link {name}: no state recorded to compare (at the save: "
                  f"{os.path.exists(saved_path)}, after the restore: "
                  f"{os.path.exists(restored_path)}): run by an older train_ppo.py?")
            failed += 1
            continue
        with open(saved_path) as handle, open(restored_path) as after_handle:
            before, after = json.load(handle), json.load(after_handle)["state"]
        differs, expected = compare(before, after)
        checked += 1
        print(f"link {name}: resumed from {checkpoint} (iteration "
              f"{before.get('training_iteration')}), {len(before)} pieces: "
              + (f"{len(differs)} differ" if differs else "the same state"))
        for line in differs:
            print(f"  DIFFERS {line}")
        for line in expected:
            print(f"  expected {line}")
        failed += bool(differs)
    if not checked and not failed:
        print(f"{experiment}: no link resumed from a checkpoint yet")
    return 1 if failed else 0


def save(algorithm: Any, checkpoint: str) -> None:
    """Beside RLlib's checkpoint: what RLlib does not save, and the state
    as it was (for check())."""
    import pickle
    with open(os.path.join(checkpoint, EXTRA), "wb") as handle:
        pickle.dump(extra(algorithm), handle)
    _write_json(os.path.join(checkpoint, SAVED), snapshot(algorithm))


def restore(algorithm: Any, checkpoint: str, record_in: Optional[str]) -> None:
    """After RLlib's own restore: put back the rest, and record the state as
    it now is in `record_in` (the link's folder), for check()."""
    import pickle
    path = os.path.join(checkpoint, EXTRA)
    saved = None
    if os.path.exists(path):
        with open(path, "rb") as handle:
            saved = pickle.load(handle)
    put_back(algorithm, saved, checkpoint)
    if record_in:
        os.makedirs(record_in, exist_ok=True)
        _write_json(os.path.join(record_in, RESTORED),
                    {"checkpoint": checkpoint, "state": snapshot(algorithm)})


def _write_json(path: str, value: Any) -> None:
    with open(path + ".tmp", "w") as handle:
        json.dump(value, handle, indent=0, sort_keys=True)
    os.replace(path + ".tmp", path)


if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1].startswith("-"):
        sys.exit(__doc__)
    if not os.path.exists(os.path.join(sys.argv[1], "chain.json")):
        sys.exit(f"rl_state.py: {sys.argv[1]} is not a chained experiment (no chain.json: "
                 "train_ppo.py --experiment-dir makes one)")
    sys.exit(check(sys.argv[1]))
