# axedge: two commands on a fresh machine.
#   make demo   set up .venv and run the main job on the embedded default (simulated plant)
#   make test   set up .venv with the test extras and run the whole suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
DEMO_SECS ?= 60

.PHONY: demo test venv venv-test bench docs clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

venv: $(BIN)/python
	$(BIN)/pip install --quiet -e ".[protocols,models,dataset]"

venv-test: $(BIN)/python
	$(BIN)/pip install --quiet -e ".[test]"

demo: venv
	$(BIN)/axedge demo --duration-secs $(DEMO_SECS) --out demo-out

test: venv-test
	$(BIN)/python -m pytest -q -p no:cacheprovider

bench: venv-test
	$(BIN)/python bench/core_throughput.py

docs: venv
	$(BIN)/axedge config reference --out docs/config-reference.md
	$(BIN)/axedge config schema --out docs/config-schema.json

clean:
	rm -rf $(VENV) demo-out axedge-data axedge-state .pytest_cache
