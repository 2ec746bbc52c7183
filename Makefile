VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup test lint wheel-check matrix demo e2e bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml .ci/setup
	VENV=$(VENV) ./.ci/setup

lint: $(STAMP)
	$(VENV)/bin/ruff check pep_agent tests bench packaging .ci/matrix.py .ci/refresh-targets.py
	$(VENV)/bin/mypy

# The wheel as kirkstone's and scarthgap's build tools make it (see packaging/check-wheel.py).
wheel-check: $(STAMP)
	$(PY) packaging/check-wheel.py

test: lint wheel-check
	$(PY) -m pytest -q

# The tests on each target's Python with exactly the versions it ships (.ci/targets.json,
# refreshed by .ci/refresh-targets.py), plus the newest libraries on 3.9 and 3.13; each in its
# own cached venv (see .ci/matrix.py). MATRIX_ARGS="--only kirkstone" picks runs.
matrix: $(STAMP)
	$(PY) .ci/matrix.py $(MATRIX_ARGS)

demo: $(STAMP)
	PATH=$(abspath $(VENV))/bin:$$PATH ./example-scripts/demo.sh

e2e: $(STAMP)
	./tests/e2e/prepare.sh
	$(PY) -m pytest -q tests/e2e --timeout=2400

bench: $(STAMP)
	$(PY) bench/run.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
