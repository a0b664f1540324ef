# Two commands do all the set-up on a fresh machine:
#   make run    create .venv, install, start a 4-node Ray cluster over MPI (one node per
#               rank, as on 4 hosts), train PPO for 3 iterations
#   make test   create .venv (Open MPI) and .venv-mpich (MPICH), install, run the
#               tests (real MPI, real Ray)
#   make test-fast  the in-process unit and protocol tests only (under a minute)
#   make compat the every_ray tests on the older Rays (a table)
PYTHON   ?= python3
VENV     ?= .venv
# A second venv whose mpi4py runs on MPICH (PyPI `mpich`: Hydra's mpiexec), so
# that the tests run jobs under both MPI families. mpi4py loads the libmpi of
# the venv it runs from, so each MPI needs a venv of its own.
MPICH_VENV ?= .venv-mpich
# A venv that a second user can run: PBS jobs run as a user of their own
# (tests/test_pbs.py), who cannot reach a Python under /root; Debian's python3
# and PyPI's MPICH. Built by `make test` when run as root.
USER_VENV ?= .venv-user
SYSTEM_PYTHON ?= /usr/bin/python3
NP       ?= 4
EXTRAS   ?= mpi,rl,dashboard,test,torch
# PyTorch is an extra; installed first, pinned, so that pip does not pick the
# newest build with several GB of CUDA packages (override for a GPU machine).
TORCH    ?= torch==2.13.0
# Older Rays that the project supports (README: Compatibility): `make compat`
# builds a venv per version (Ray installed first, then the project, which
# keeps it) and runs the every_ray tests on each.
OLD_RAYS ?= 2.40.0 2.52.1
# `make test` needs one of them too: a job whose ranks run different Rays.
OTHER_RAY ?= 2.52.1
# `make test` runs the suite on two workers (pytest-xdist), each test file
# on one worker (--dist loadfile: a file's module fixtures, a Slurm, a served
# cluster, emulated hosts, are made once); WORKERS=0: one process.
WORKERS  ?= 2
# The tests that touch what differs between Rays (marked every_ray: the
# compat tests, a cluster's start and stop, tokens, lost nodes and ranks).
COMPAT_TESTS ?= tests
COMPAT_MARK ?= every_ray
COMPAT_SELECT ?=
BIN      := $(VENV)/bin
# Open MPI refuses to run as root without these (the tests run mpirun too).
export OMPI_ALLOW_RUN_AS_ROOT := 1
export OMPI_ALLOW_RUN_AS_ROOT_CONFIRM := 1

.PHONY: venv venv-mpich venv-user pbs run test test-mpich test-fast flux docs bench $(BENCHES) chaos compat clean

venv: $(VENV)/.installed

venv-mpich: $(MPICH_VENV)/.installed

venv-user: $(USER_VENV)/.installed

$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet '$(TORCH)'
	$(BIN)/pip install --quiet -e '.[$(EXTRAS)]'
	touch $@

$(MPICH_VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(MPICH_VENV)
	$(MPICH_VENV)/bin/pip install --quiet --upgrade pip
	$(MPICH_VENV)/bin/pip install --quiet mpich
	$(MPICH_VENV)/bin/pip install --quiet -e '.[test]'
	touch $@

$(USER_VENV)/.installed: setup.cfg pyproject.toml
	$(SYSTEM_PYTHON) -m venv $(USER_VENV)
	$(USER_VENV)/bin/pip install --quiet --upgrade pip
	$(USER_VENV)/bin/pip install --quiet mpich
	$(USER_VENV)/bin/pip install --quiet -e .
	touch $@

# .venv-ray-2.52.1 etc.: that Ray first, then the project (which must keep it).
.venv-ray-%/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv .venv-ray-$*
	.venv-ray-$*/bin/pip install --quiet --upgrade pip
	.venv-ray-$*/bin/pip install --quiet '$(TORCH)' 'ray[rllib]==$*'
	.venv-ray-$*/bin/pip install --quiet -e '.[$(EXTRAS)]'
	.venv-ray-$*/bin/python -c "import ray, sys; sys.exit(ray.__version__ != '$*')" \
		|| { echo "pip replaced Ray $* in .venv-ray-$*"; exit 1; }
	touch $@

run: venv
	VENV=$(VENV) NP=$(NP) bash jobs/local_mpirun.sh

# As root, the PBS tests' venv too (a job's user runs it).
AS_ROOT  := $(filter 0,$(shell id -u))
test: venv venv-mpich .venv-ray-$(OTHER_RAY)/.installed $(if $(AS_ROOT),venv-user)
	START_RAY_MPICH_VENV=$(abspath $(MPICH_VENV)) START_RAY_USER_VENV=$(abspath $(USER_VENV)) \
		$(BIN)/python -m pytest \
		-n $(WORKERS) --dist loadfile $(PYTEST_ARGS)

# The jobs of the tests that name no MPI, under MPICH's Hydra instead of Open
# MPI (most clusters are MPICH-family): the fault tests and the lifecycle in
# CI; MPICH_TESTS names more (docs/testing.md says which pass).
MPICH_TESTS ?= tests/test_faults.py tests/test_lifecycle.py tests/test_gcs.py tests/test_restarts.py
test-mpich: venv venv-mpich
	START_RAY_TEST_MPI=mpich START_RAY_MPICH_VENV=$(abspath $(MPICH_VENV)) $(BIN)/python \
		-m pytest -n $(WORKERS) --dist loadfile $(PYTEST_ARGS) $(MPICH_TESTS)

# A real Flux for tests/test_flux.py: flux-core from ../shared/vendor/, built
# once per machine into ~/.cache/start_ray (about 7 minutes on 2 cores).
flux:
	$(PYTHON) tests/local_flux.py build

# A real OpenPBS for tests/test_pbs.py: built from ../shared/vendor/ once per
# machine into /var/cache/start_ray as root (about 4 minutes on 2 cores).
pbs:
	$(PYTHON) tests/local_pbs.py build

# While you change start_ray: the in-process tests (a pytest marker), seconds.
test-fast: venv
	$(BIN)/python -m pytest -m fast -q $(PYTEST_ARGS)

# docs/options.md from the option table (tests/test_docs.py checks they agree).
docs: venv
	$(BIN)/python -c "from start_ray.entry import reference; print(reference.markdown(), end='')" \
		> docs/options.md

# Every figure the README and docs/ quote, one target per study; each
# publishes benchmarks/results/NAME.md and NAME.json (command, commit, date,
# machine, versions: benchmarks/evidence.py). Run them on a quiet machine, with
# the tree committed. `make bench` runs them all (~3.5 h on 2 cores).
BENCH_ENV = START_RAY_MPICH_VENV=$(abspath $(MPICH_VENV))
BENCHES = bench-startup bench-peers bench-curve bench-microbenchmark bench-storm \
	bench-scale bench-log-sync bench-chaos bench-elastic bench-ppo bench-tests

bench: $(BENCHES)

# start-up against the floor and the sleep recipe, teardown, CPU, memory, PPO
# throughput, on one host
bench-startup: venv venv-mpich
	$(BIN)/python benchmarks/compare.py --ranks 1 2 4 --repeat 5

# The head's GCS store: start-up with and without it, and a GCS kill (~6 min).
bench-gcs: venv
	$(BIN)/python benchmarks/gcs_store.py --ranks 1 2 --repeat 5 --kills 3

# beside symmetric-run, the NeMo ray.sub pattern, the Theta script and the
# floor, on 2 and 3 emulated hosts (root)
bench-peers: venv
	$(BIN)/python benchmarks/peers.py --hosts 2 3 --rounds 2

# launch -> ready at 1 to 16 emulated hosts (root)
bench-curve: venv
	$(BIN)/python benchmarks/peers.py --hosts 1 2 4 8 16 --peers start_ray floor \
		--rounds 1 --name scale-curve --make bench-curve

bench-microbenchmark: venv
	$(BIN)/python benchmarks/microbench.py --rounds 3

# the join storm and the teardown with many ranks on one host
bench-storm: venv
	$(BIN)/python benchmarks/compare.py --ranks --per-host 16 128 --join-storm 12 \
		--slots default 3 --storm-runs 2 --ppo-iters 0 --name join-storm --make bench-storm

# rank 0 simulated up to 10,000 hosts x 128 ranks
bench-scale: venv
	$(BIN)/python benchmarks/scale_sim.py --hosts 10 100 1000 10000 --repeat 3 \
		--publish scale-sim

bench-log-sync: venv
	$(BIN)/python benchmarks/log_sync.py

# the chaos matrix: every case under both MPIs once, the rest at random
bench-chaos: venv venv-mpich
	$(BENCH_ENV) $(BIN)/python benchmarks/chaos.py --runs 60

bench-elastic: venv
	$(BIN)/python benchmarks/elastic_ppo.py --runs 2

# CartPole-v1 to 450, tf2 and torch, 3 seeds each
bench-ppo: venv
	$(BIN)/python benchmarks/train_ppo.py --seeds 1 2 3

# the suite's time, per file and its slowest tests
bench-tests: venv venv-mpich .venv-ray-$(OTHER_RAY)/.installed
	$(BENCH_ENV) $(BIN)/python benchmarks/test_durations.py --workers $(WORKERS)

# The randomized chaos matrix (benchmarks/chaos.py): prints a table.
chaos: bench-chaos

# The Ray matrix: the every_ray tests on each older Ray (the newest runs
# everything in `make test`), then a table
# (benchmarks/compat_table.py; exit 1 if a test failed).
compat: $(foreach v,$(OLD_RAYS),.venv-ray-$(v)/.installed) venv venv-mpich
	START_RAY_MPICH_VENV=$(abspath $(MPICH_VENV)) $(BIN)/python benchmarks/compat_table.py \
		--tests '$(COMPAT_TESTS)' -m '$(COMPAT_MARK)' -k '$(COMPAT_SELECT)' \
		$(foreach v,$(OLD_RAYS),.venv-ray-$(v))

clean:
	rm -rf $(VENV) $(MPICH_VENV) $(USER_VENV) .venv-ray-* *.egg-info
