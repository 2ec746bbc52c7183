VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

# The real FCC (factory-configurator-client-example) of `make test` and `make realfcc`:
# PEP_REAL_FCC, else the one `packaging/real-fcc/cached.sh -b ARCHIVES` built into the cache
# (.ci/run does). Where there is one, the provisioning tests run it in place of `sim fcc`;
# PEP_REAL_FCC= (empty) opts out.
ifeq ($(origin PEP_REAL_FCC),undefined)
REAL_FCC := $(shell packaging/real-fcc/cached.sh 2>/dev/null)
else
REAL_FCC := $(PEP_REAL_FCC)
endif
test realfcc: export PEP_REAL_FCC := $(REAL_FCC)

.PHONY: setup test lint wheel-check matrix demo e2e bench deb crashtest ptest realfcc clean exit-codes state-places

setup: $(STAMP)

$(STAMP): pyproject.toml .ci/setup
	VENV=$(VENV) ./.ci/setup

lint: $(STAMP)
	$(VENV)/bin/ruff check pep_agent tests bench packaging .ci/matrix.py .ci/refresh-targets.py \
		.ci/readme-tables.py
	$(VENV)/bin/mypy

# The wheel as kirkstone's and scarthgap's build tools make it (see packaging/check-wheel.py).
wheel-check: $(STAMP)
	$(PY) packaging/check-wheel.py

# The tests mostly wait on processes and sockets (their processes use about a third of the
# wall time of two cores): four workers (pytest-xdist) keep two cores busy. Idle workers take
# tests queued for busy ones (worksteal), and the integration tests, which hold the long ones,
# come first so that none starts last. TEST_WORKERS=0 runs them in this process.
TEST_WORKERS ?= 4
# The comparison with the real FCC (tests/realfcc) waits out FCC's timeouts: `make realfcc`.
test: lint wheel-check
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist worksteal --durations=15 \
		tests/integration tests/unit

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

# The crash explorers in full: every crash state of a provision (tests/crash) and a fault
# injected into every durable-state system call; `make test` runs a seeded sample of each.
# PEP_CRASH_SAMPLE=N caps the states and fault cases per recording (.ci/run does).
crashtest: $(STAMP)
	PEP_CRASH_FULL=1 $(PY) -m pytest -q -s -p no:cacheprovider --timeout=0 \
		tests/integration/test_crash_states.py tests/integration/test_disk_faults.py -k "crash_state or syscall"

# The Yocto recipe's run-ptest on an installed copy with every unit test (`make test` gives it
# a few: the unit tests themselves run there already).
ptest: $(STAMP)
	PEP_PTEST_FULL=1 $(PY) -m pytest -q tests/integration/test_ptest.py

# sim fcc compared with the real FCC, and the provisioning tests with the real FCC in place of
# sim fcc. Without a real FCC the comparison skips and says why.
REALFCC_WORKERS ?= 2
realfcc: $(STAMP)
	$(PY) -m pytest -q -rs -n $(REALFCC_WORKERS) tests/realfcc $(if $(PEP_REAL_FCC),tests/integration/test_provision.py)

bench: $(STAMP)
	$(PY) bench/run.py

# The Debian packages (pep-agent, pep-agent-sim) into $(DEB_DIR), checked by lintian; installs
# debian/control's Build-Depends (apt-get build-dep) and lintian first when any is missing.
DEB_DIR ?= dist
deb:
	./.ci/deb $(DEB_DIR)

# The README's exit-code table, from pep_agent/exit_codes.py (a unit test checks they agree).
exit-codes: $(STAMP)
	$(PY) .ci/readme-tables.py exit-codes

# The README's table of each profile's state directory, from pep_agent/settings/profiles.py
# (a unit test checks they agree).
state-places: $(STAMP)
	$(PY) .ci/readme-tables.py state-places

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
