# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# a path-based editable install (a .pth naming the checkout), which mypy and other type
# checkers can follow; setuptools' default is an import hook they cannot see through
EDITABLE := --config-settings editable_mode=compat
SEEDS  ?= 200
RUNS   ?= 5

.PHONY: demo test slow sim bench chaos clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]' $(EDITABLE)
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m paxtor demo

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/python -m pytest -q -m "not slow"

slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

sim: $(STAMP)
	$(BIN)/python -m paxtor.sim --seeds $(SEEDS)

bench: $(STAMP)
	$(BIN)/pip install -q -e '.[test,bench]' $(EDITABLE)
	$(BIN)/python -m benchmarks

# iptables (partitions by address) and faketime (clock rate and offset) when root and missing;
# without them the suite skips those faults (it says so) and runs the rest.
chaos: $(STAMP)
	$(BIN)/pip install -q -e '.[test,chaos]' $(EDITABLE)
	@if [ "$$(id -u)" = 0 ] && ! { command -v iptables >/dev/null && command -v faketime >/dev/null; }; then \
		{ apt-get update -qq && apt-get install -y -qq iptables faketime; } >/dev/null 2>&1 || true; fi
	$(BIN)/python -m tests.chaos --runs $(RUNS) $(if $(SEED),--seed $(SEED)) $(CHAOS_FLAGS)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis
