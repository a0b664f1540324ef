# Two commands do all the set-up on a fresh machine:
#   make run    create .venv, install, start a 4-node Ray cluster over MPI (one node per
#               rank, as on 4 hosts), train PPO for 3 iterations
#   make test   create .venv, install, run the tests (real MPI, real Ray)
PYTHON   ?= python3
VENV     ?= .venv
NP       ?= 4
EXTRAS   ?= mpi,test,torch
# PyTorch is an extra; installed first, pinned, so that pip does not pick the
# newest build with several GB of CUDA packages (override for a GPU machine).
TORCH    ?= torch==2.13.0
BIN      := $(VENV)/bin
# Open MPI refuses to run as root without these (the tests run mpirun too).
export OMPI_ALLOW_RUN_AS_ROOT := 1
export OMPI_ALLOW_RUN_AS_ROOT_CONFIRM := 1

.PHONY: venv run test bench clean

venv: $(VENV)/.installed

$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet '$(TORCH)'
	$(BIN)/pip install --quiet -e '.[$(EXTRAS)]'
	touch $@

run: venv
	VENV=$(VENV) NP=$(NP) bash jobs/local_mpirun.sh

test: venv
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: venv
	$(BIN)/python benchmarks/compare.py
	$(BIN)/python benchmarks/train_ppo.py

clean:
	rm -rf $(VENV) *.egg-info
