VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup test lint wheel-check demo e2e bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml .ci/setup
	VENV=$(VENV) ./.ci/setup

lint: $(STAMP)
	$(VENV)/bin/ruff check pep_agent tests bench packaging
	$(VENV)/bin/mypy

# The wheel as kirkstone's and scarthgap's build tools make it (see packaging/check-wheel.py).
wheel-check: $(STAMP)
	$(PY) packaging/check-wheel.py

test: lint wheel-check
	$(PY) -m pytest -q

demo: $(STAMP)
	PATH=$(abspath $(VENV))/bin:$$PATH ./example-scripts/demo.sh

e2e: $(STAMP)
	./tests/e2e/prepare.sh
	$(PY) -m pytest -q tests/e2e --timeout=2400

bench: $(STAMP)
	$(PY) bench/run.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
