VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup test lint wheel-check matrix demo e2e bench crashtest clean

setup: $(STAMP)

$(STAMP): pyproject.toml .ci/setup
	VENV=$(VENV) ./.ci/setup

lint: $(STAMP)
	$(VENV)/bin/ruff check pep_agent tests bench packaging .ci/matrix.py
	$(VENV)/bin/mypy

# The wheel as kirkstone's and scarthgap's build tools make it (see packaging/check-wheel.py).
wheel-check: $(STAMP)
	$(PY) packaging/check-wheel.py

test: lint wheel-check
	$(PY) -m pytest -q

# The unit tests on Python 3.9, 3.10, 3.12, 3.13 and the integration tests on 3.9 and 3.13,
# each in its own cached venv (see .ci/matrix.py); `make test` covers the venv's own 3.11.
matrix: $(STAMP)
	$(PY) .ci/matrix.py

demo: $(STAMP)
	PATH=$(abspath $(VENV))/bin:$$PATH ./example-scripts/demo.sh

e2e: $(STAMP)
	./tests/e2e/prepare.sh
	$(PY) -m pytest -q tests/e2e --timeout=2400

# Issue 14's explorers in full: every crash state of a provision (tests/crash) and a fault
# injected into every durable-state system call; `make test` runs a seeded sample of each.
# PEP_CRASH_SAMPLE=N caps the states and fault cases per recording (.ci/run does).
crashtest: $(STAMP)
	PEP_CRASH_FULL=1 $(PY) -m pytest -q -s -p no:cacheprovider --timeout=0 \
		tests/integration/test_crash_states.py tests/integration/test_disk_faults.py -k "crash_state or syscall"

bench: $(STAMP)
	$(PY) bench/run.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
