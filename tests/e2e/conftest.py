"""Fixtures of the virtual-gateway tests: cached Debian root, agent wheel, testbeds.

Side effects: as root, builds/reads the image cache, creates network namespaces, mounts
overlays and boots containers; every finaliser powers off, unmounts and deletes what its
fixture made, also when a test fails. The whole suite skips when not root or when
systemd-nspawn/debootstrap are missing (`make e2e` runs tests/e2e/prepare.sh first).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_image import cached_root
from e2e_install import build_wheel
from e2e_testbed import Testbed


def _missing_prerequisite() -> str | None:
    if os.geteuid() != 0:
        return "the virtual gateway needs root (network namespaces, overlayfs, nspawn)"
    for tool in ("systemd-nspawn", "debootstrap", "nsenter", "ip"):
        if shutil.which(tool) is None and not Path("/usr/sbin", tool).exists():
            return f"{tool} is missing; run tests/e2e/prepare.sh"
    return None


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    reason = _missing_prerequisite()
    if reason and os.environ.get("CI"):
        # In CI a skipped end-to-end suite would pass unseen: a missing tool is an error.
        raise pytest.UsageError(f"e2e: {reason}")
    if reason:
        for item in items:
            item.add_marker(pytest.mark.skip(reason=reason))


def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> None:
    """Steps of one gateway's life run in order; after a failed step the rest are skipped."""
    if call.excinfo is not None and "incremental" in item.keywords and item.parent is not None:
        item.parent._e2e_failed = item  # type: ignore[attr-defined]


def pytest_runtest_setup(item: pytest.Item) -> None:
    if "incremental" in item.keywords and item.parent is not None:
        failed = getattr(item.parent, "_e2e_failed", None)
        if failed is not None:
            pytest.skip(f"an earlier step of this gateway's life failed ({failed.name})")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "incremental: steps that build on the previous ones")
    config.addinivalue_line("markers", "power_cut: the power cut after an injection")
    config.addinivalue_line("markers", "volatile_var_lib: /var/lib in RAM, as on a read-only "
                            "Yocto root")
    config.addinivalue_line("markers", "server_restart: the pep server restarted during the "
                            "injection")


@pytest.fixture(scope="session")
def e2e_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("e2e")


@pytest.fixture(scope="session")
def base_root(e2e_dir: Path) -> Path:
    """The cached Debian root (built on first use; its log is in the session's tmp dir)."""
    return cached_root(e2e_dir / "image-build.log")


@pytest.fixture(scope="session")
def agent_wheel(e2e_dir: Path) -> Path:
    return build_wheel(e2e_dir / "wheel")


@pytest.fixture(scope="class")
def testbed(request: pytest.FixtureRequest, base_root: Path, agent_wheel: Path,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Testbed]:
    """One testbed per test class: the steps of a class share the gateway's life.

    A class's `testbed_options` (Testbed's keyword arguments) choose how the gateway is built.
    """
    name = request.node.name.lower()
    options = getattr(request.cls, "testbed_options", {})
    bed = Testbed(tmp_path_factory.mktemp(name), base_root, agent_wheel,
                  serial=f"E2E-{name[:20]}-{os.getpid()}", **options)
    try:
        bed.set_up()
        yield bed
    finally:
        bed.close()
