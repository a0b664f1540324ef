# Two commands do all the set-up on a fresh machine:
#   make run    create .venv, install, start a 4-node Ray cluster over MPI (one node per
#               rank, as on 4 hosts), train PPO for 3 iterations
#   make test   create .venv (Open MPI) and .venv-mpich (MPICH), install, run the
#               tests (real MPI, real Ray)
PYTHON   ?= python3
VENV     ?= .venv
# A second venv whose mpi4py runs on MPICH (PyPI `mpich`: Hydra's mpiexec), so
# that the tests run jobs under both MPI families. mpi4py loads the libmpi of
# the venv it runs from, so each MPI needs a venv of its own.
MPICH_VENV ?= .venv-mpich
NP       ?= 4
EXTRAS   ?= mpi,test,torch
# PyTorch is an extra; installed first, pinned, so that pip does not pick the
# newest build with several GB of CUDA packages (override for a GPU machine).
TORCH    ?= torch==2.13.0
BIN      := $(VENV)/bin
# Open MPI refuses to run as root without these (the tests run mpirun too).
export OMPI_ALLOW_RUN_AS_ROOT := 1
export OMPI_ALLOW_RUN_AS_ROOT_CONFIRM := 1

.PHONY: venv venv-mpich run test bench chaos clean

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

run: venv
	VENV=$(VENV) NP=$(NP) bash jobs/local_mpirun.sh

test: venv venv-mpich
	START_RAY_MPICH_VENV=$(abspath $(MPICH_VENV)) $(BIN)/python -m pytest $(PYTEST_ARGS)

bench: venv
	$(BIN)/python benchmarks/compare.py
	$(BIN)/python benchmarks/train_ppo.py

# The randomized chaos matrix (benchmarks/chaos.py): prints a table.
chaos: venv venv-mpich
	START_RAY_MPICH_VENV=$(abspath $(MPICH_VENV)) $(BIN)/python benchmarks/chaos.py

clean:
	rm -rf $(VENV) $(MPICH_VENV) *.egg-info
