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

.PHONY: venv test demo bench clean

venv: $(STAMP)

$(VENV)/.deps-installed: requirements.txt requirements-ros.txt requirements-test.txt constraints.txt
	test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip==26.3 setuptools==84.2.1 wheel==0.48.0
	$(VPY) -m pip install -q -c constraints.txt -r requirements.txt -r requirements-ros.txt -r requirements-test.txt
	touch $@

$(STAMP): $(VENV)/.deps-installed $(SOURCES)
	$(VPY) -m pip install -q --no-deps --no-build-isolation --force-reinstall .
	touch $@

test: venv
	$(VPY) -m pytest test -q $(PYTEST_ARGS)

demo: venv
	$(VENV)/bin/invdyn_demo --output results/demo $(DEMO_ARGS)

bench: venv
	$(VPY) bench/kuka_core.py

clean:
	rm -rf build dist *.egg-info $(VENV)
