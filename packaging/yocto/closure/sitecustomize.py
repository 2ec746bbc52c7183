"""Import recorder for check-closure.py; active only when PEP_CLOSURE_RECORD names a directory.

Side effects (only then): appends one line per first import of a module, "importer<TAB>module",
to PEP_CLOSURE_RECORD/<pid>.tsv, after a first line holding the process's command line. Lines
are written as imports happen, so a process ended by a signal leaves a complete record.
"""

import os
import sys
import threading
from types import FrameType
from typing import Optional

_DIR = os.environ.get("PEP_CLOSURE_RECORD")


def _install(directory: str) -> None:
    lock = threading.Lock()
    out = open(os.path.join(directory, f"{os.getpid()}.tsv"), "a", buffering=1)  # noqa: SIM115
    with open("/proc/self/cmdline", "rb") as f:
        argv = f.read().split(b"\0")
    out.write("argv\t" + " ".join(a.decode(errors="replace") for a in argv if a) + "\n")
    # What the interpreter loaded before this hook ran (site, encodings, ...).
    for name in sorted(sys.modules):
        out.write(f"<startup>\t{name}\n")
    seen = set(sys.modules)

    class Recorder:
        """A meta-path finder that finds nothing: it notes who imports what, first time only."""

        @staticmethod
        def find_spec(name, path=None, target=None):  # type: ignore[no-untyped-def]
            if name in seen:
                return None
            seen.add(name)
            # Only modules that exist: a failed optional import (try: import brotli) is no need.
            for finder in sys.meta_path[1:]:
                find = getattr(finder, "find_spec", None)
                if find is not None and find(name, path, target) is not None:
                    break
            else:
                return None
            frame: Optional[FrameType] = sys._getframe(1)
            importer = "<unknown>"
            while frame is not None:
                mod = frame.f_globals.get("__name__", "")
                # Skip the import machinery itself: the importer is the first frame outside it.
                if not (mod.startswith("importlib") or mod == __name__
                        or frame.f_code.co_filename.startswith("<frozen")):
                    importer = mod
                    break
                frame = frame.f_back
            with lock:
                out.write(f"{importer}\t{name}\n")
            return None

    sys.meta_path.insert(0, Recorder())


if _DIR:
    _install(_DIR)
