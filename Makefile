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
# The tests that touch what differs between Rays (marked every_ray: the
# compat tests, a cluster's start and stop, tokens, lost nodes and ranks).
COMPAT_TESTS ?= tests
COMPAT_MARK ?= every_ray
COMPAT_SELECT ?=
BIN      := $(VENV)/bin
# Open MPI refuses to run as root without these (the tests run mpirun too).
export OMPI_ALLOW_RUN_AS_ROOT := 1
export OMPI_ALLOW_RUN_AS_ROOT_CONFIRM := 1

.PHONY: venv venv-mpich run test test-fast docs bench chaos compat clean

venv: $(VENV)/.installed

venv-mpich: $(MPICH_VENV)/.installed

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

test: venv venv-mpich .venv-ray-$(OTHER_RAY)/.installed
	START_RAY_MPICH_VENV=$(abspath $(MPICH_VENV)) $(BIN)/python -m pytest $(PYTEST_ARGS)

# While you change start_ray: the in-process tests (a pytest marker), seconds.
test-fast: venv
	$(BIN)/python -m pytest -m fast -q $(PYTEST_ARGS)

# docs/options.md from the option table (tests/test_docs.py checks they agree).
docs: venv
	$(BIN)/python -c "from start_ray import options; print(options.markdown(), end='')" \
		> docs/options.md

bench: venv
	$(BIN)/python benchmarks/compare.py
	$(BIN)/python benchmarks/train_ppo.py
	$(BIN)/python benchmarks/elastic_ppo.py

# The randomized chaos matrix (benchmarks/chaos.py): prints a table.
chaos: venv venv-mpich
	START_RAY_MPICH_VENV=$(abspath $(MPICH_VENV)) $(BIN)/python benchmarks/chaos.py

# The Ray matrix: the every_ray tests on each older Ray (the newest runs
# everything in `make test`), then a table
# (benchmarks/compat_table.py; exit 1 if a test failed).
compat: $(foreach v,$(OLD_RAYS),.venv-ray-$(v)/.installed) venv venv-mpich
	START_RAY_MPICH_VENV=$(abspath $(MPICH_VENV)) $(BIN)/python benchmarks/compat_table.py \
		--tests '$(COMPAT_TESTS)' -m '$(COMPAT_MARK)' -k '$(COMPAT_SELECT)' \
		$(foreach v,$(OLD_RAYS),.venv-ray-$(v))

clean:
	rm -rf $(VENV) $(MPICH_VENV) .venv-ray-* *.egg-info
