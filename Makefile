# `make test` and `make demo` work on a fresh machine: each creates .venv and installs the package first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed

.PHONY: setup test demo clean

setup: $(INSTALLED)

$(INSTALLED): setup.cfg pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[test]'
	touch $@

test: $(INSTALLED)
	$(PY) -m pytest -q tests

demo: $(INSTALLED)
	$(PY) -m ltkd_jax.demo

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
