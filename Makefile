# Two commands do all the set-up on a fresh machine:
#   make run    create .venv, install, start a 4-rank Ray cluster over MPI, train PPO for 3 iterations
#   make test   create .venv, install, run the tests (real MPI, real Ray)
PYTHON   ?= python3
VENV     ?= .venv
NP       ?= 4
EXTRAS   ?= mpi,test,torch
# PyTorch is an extra; installed first, pinned, so that pip does not pick the
# newest build with several GB of CUDA packages (override for a GPU machine).
TORCH    ?= torch==2.13.0
BIN      := $(VENV)/bin
# Open MPI refuses to run as root without these, and this project's smoke runs
# put 4 ranks on small machines, hence --oversubscribe.
export OMPI_ALLOW_RUN_AS_ROOT := 1
export OMPI_ALLOW_RUN_AS_ROOT_CONFIRM := 1
MPIRUN   ?= $(BIN)/mpirun --oversubscribe

.PHONY: venv run test bench clean

venv: $(VENV)/.installed

$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet '$(TORCH)'
	$(BIN)/pip install --quiet -e '.[$(EXTRAS)]'
	touch $@

run: venv
	$(MPIRUN) -np $(NP) $(BIN)/python -m start_ray --num-cpus 1 drivers/train_ppo.py \
		--framework tf2 --stop-iters 3 --train-batch-size 1000

test: venv
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: venv
	$(BIN)/python benchmarks/lifecycle.py
	$(BIN)/python benchmarks/train_ppo.py

clean:
	rm -rf $(VENV) *.egg-info
