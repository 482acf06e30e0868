# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
SEEDS  ?= 200
RUNS   ?= 5

.PHONY: demo test slow sim bench chaos clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m paxtor demo

test: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

sim: $(STAMP)
	$(BIN)/python -m paxtor.paxos.sim --seeds $(SEEDS)

bench: $(STAMP)
	$(BIN)/pip install -q -e '.[test,bench]'
	$(BIN)/python -m benchmarks

chaos: $(STAMP)
	$(BIN)/python -m tests.chaos --runs $(RUNS)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis
