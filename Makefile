# invdyn_ros developer entry points. `make demo` and `make test` work on a fresh machine:
# they create .venv/ with every dependency pinned and install the package (non-editable, so the
# ament index files, launch/ and config/ land under .venv/share and `ros2 run`-style lookup works).
PYTHON ?= python3
VENV   := .venv
VPY    := $(VENV)/bin/python
STAMP  := $(VENV)/.invdyn-installed
SOURCES := $(shell find invdyn_ros launch config resource -type f -not -name '*.pyc') \
           setup.py setup.cfg package.xml
PYTEST_ARGS ?=
DEMO_ARGS ?=

.PHONY: venv venv-min test test-min demo bench clean

venv: $(STAMP)

$(VENV)/.deps-installed: requirements.txt requirements-ros.txt requirements-test.txt constraints.txt
	test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip==26.3 setuptools==84.2.1 wheel==0.48.0
	$(VPY) -m pip install -q -c constraints.txt -r requirements.txt -r requirements-ros.txt -r requirements-test.txt
	touch $@

# rm -rf build: setuptools reuses build/lib, so a module moved or deleted since the last install
# would be installed again from there.
$(STAMP): $(VENV)/.deps-installed $(SOURCES)
	rm -rf build
	$(VPY) -m pip install -q --no-deps --no-build-isolation --force-reinstall .
	touch $@

test: venv
	$(VPY) -m pytest test -q $(PYTEST_ARGS)

# The suite with the OLDEST supported versions (requirements-min.txt: Ubuntu 24.04's numpy 1.26.4,
# scipy 1.11.4, ...), so setup.py's ranges are tested at their lower ends; `pip check` verifies
# that these versions satisfy setup.py's install_requires.
VENV_MIN  := .venv-min
VPY_MIN   := $(VENV_MIN)/bin/python
STAMP_MIN := $(VENV_MIN)/.invdyn-installed

venv-min: $(STAMP_MIN)

$(VENV_MIN)/.deps-installed: requirements-min.txt requirements-ros.txt requirements-test.txt
	test -x $(VPY_MIN) || $(PYTHON) -m venv $(VENV_MIN)
	$(VPY_MIN) -m pip install -q --upgrade pip==26.3 setuptools==84.2.1 wheel==0.48.0
	$(VPY_MIN) -m pip install -q -r requirements-min.txt -r requirements-ros.txt -r requirements-test.txt
	touch $@

$(STAMP_MIN): $(VENV_MIN)/.deps-installed $(SOURCES)
	rm -rf build
	$(VPY_MIN) -m pip install -q --no-deps --no-build-isolation --force-reinstall .
	$(VPY_MIN) -m pip check
	touch $@

# OPENBLAS_NUM_THREADS=1: numpy 1.26.4's bundled OpenBLAS runs the node's small read-out matmul
# multithreaded, which doubles the median callback (README, Development); one thread restores it.
test-min: venv-min
	OPENBLAS_NUM_THREADS=1 $(VPY_MIN) -m pytest test -q $(PYTEST_ARGS)

demo: venv
	$(VENV)/bin/invdyn_demo --output results/demo $(DEMO_ARGS)

bench: venv
	$(VPY) bench/kuka_core.py

clean:
	rm -rf build dist *.egg-info $(VENV) $(VENV_MIN)
