# `make test` and `make demo` work on a fresh machine: each creates .venv and installs the package first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed

FASHION_MNIST_DIR := /usr/share/datasets/fashion-mnist
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup test demo fashion-mnist clean

setup: $(INSTALLED)

$(INSTALLED): setup.cfg pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[test]'
	touch $@

# One worker more than the cores (at most 4): many tests wait on processes they start, and the spare worker fills
# those waits (2 cores: 10:07 against 11:06 with one per core); loadscope keeps each module in one worker, so its
# module fixtures run once; modules in collection order (xdist would start the one-test multi-process module last).
test: $(INSTALLED)
	$(PY) -m pytest -q -n $$(( $$(nproc) + 1 )) --maxprocesses=4 --dist loadscope --no-loadscope-reorder tests

demo: $(INSTALLED) fashion-mnist
	$(PY) -m ltkd_jax.tools.demo --workdir=workdirs/demo

# The real data set a machine without internet can have: Debian's copy of Fashion-MNIST (docs/data.md).
fashion-mnist:
	@if [ ! -f $(FASHION_MNIST_DIR)/train-images-idx3-ubyte.gz ] && command -v apt-get >/dev/null; then \
		$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq dataset-fashion-mnist; fi

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
