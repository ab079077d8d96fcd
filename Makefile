# One entry point for people and CI. `make demo` runs the main job, `make test` the tests.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed

.PHONY: install system-deps demo test test-slow lint bench clean

$(STAMP): pyproject.toml constraints.txt
	$(MAKE) system-deps
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt torch==2.13.0
	$(BIN)/pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# bubblewrap is the default sandbox; install it when missing and we may (root, apt).
system-deps:
	@command -v bwrap >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap; \
	  else echo "warning: bubblewrap (bwrap) is not installed; sandboxed judging needs it or Docker"; fi; }

demo: install
	$(BIN)/sdpo judge --task HumanEval/0 --canonical
	$(BIN)/sdpo judge --task HumanEval/0 --solution examples/solutions/humaneval_0_wrong.py

test: install
	$(BIN)/python -m pytest -q -n 2

test-slow: install
	$(BIN)/python -m pytest -q -m slow

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: install
	$(BIN)/python bench/sandbox.py

clean:
	rm -rf $(VENV) build *.egg-info
