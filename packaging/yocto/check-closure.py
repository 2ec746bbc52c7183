#!/usr/bin/env python3
"""Checks that pep-agent's RDEPENDS cover every module its commands import, per Yocto branch.

  record  runs every command (sandbox mode, --root) against the simulators, with the import
          recorder (closure/sitecustomize.py) on PYTHONPATH, and writes what each process
          imported, and who imported it, to closure/imports-<branch>.json (run it with
          the branch's Python and library versions: the modules imported differ).
  derive  reads a branch's python3-manifest.json (the standard library's split into packages)
          and the RDEPENDS of the recipes the agent uses, from oe-core and meta-python
          checkouts, and writes closure/<branch>.json.
  check   maps every recorded module to the package providing it on that branch and fails
          (exit 1) when the RDEPENDS of pep-agent (and -sim), followed through the RDEPENDS of
          what they list, do not provide it, or when the layer's own recipes (typer) miss what
          their own code imports. Lists the RDEPENDS entries nothing needs. The RDEPENDS of
          the layer's packages are read from the recipes' text (a fast approximation: it sees
          no class, override or other layer's .bbappend), or with --bitbake-env from the
          output of `bitbake -e pep-agent` (and -e python3-typer): the values bitbake computed,
          which check-layer.sh passes.

Side effects: record starts the simulators and the agent on loopback under a temporary root
and removes it; derive writes one JSON file. check only reads. Exit codes: 0 ok, 1 a gap,
2 bad usage or input.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import select
import shlex
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DATA = HERE / "closure"
RECIPE = HERE / "recipes-connectivity/pep-agent/pep-agent_git.bb"
PN = "pep-agent"
# Recipes whose name does not follow python3-<distribution>.
RECIPE_OF = {"systemd": "python3-systemd", "_cffi_backend": "python3-cffi",
             "_cbor2": "python3-cbor2", "typing_extensions": "python3-typing-extensions"}
# Third-party recipes whose RDEPENDS derive reads (and those they list, followed).
FOLLOW = ("python3-requests", "python3-psutil", "python3-systemd", "python3-cbor2",
          "python3-click", "python3-typing-extensions", "python3-cryptography",
          "python3-pytest", "python3-hypothesis")
# Test files the recipe does not install in the ptest (see do_install_ptest).
NOT_IN_PTEST = ("test_bench_smoke.py",)
SERIAL = "CLOSURE-GW-1"
STEP_TIMEOUT = 120.0
# The recorder and a virtualenv's setuptools shim: loaded here, absent from an image.
RECORDER_ITSELF = ("sitecustomize", "_distutils_hack")


class Usage(Exception):
    """Bad input: exit 2 with a one-line message."""


# ---------------------------------------------------------------- record

def _run(argv: list[str], env: dict[str, str], cwd: Path) -> int:
    out = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True,
                         timeout=STEP_TIMEOUT, stdin=subprocess.DEVNULL, check=False)
    # An import error is exactly what this check exists for: never let it pass as a failure
    # the command was expected to have.
    if "Traceback (most recent call last)" in out.stderr:
        raise RuntimeError(f"{shlex.join(argv[2:])} crashed:\n{out.stderr[-2000:]}")
    return out.returncode


def _start(argv: list[str], env: dict[str, str], cwd: Path, pattern: str,
           ) -> tuple[subprocess.Popen[bytes], re.Match[str]]:
    """Start a simulator and wait (30 s at most) for the output saying it is ready."""
    child = subprocess.Popen(argv, env=env, cwd=cwd, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, start_new_session=True)
    assert child.stdout is not None
    fd = child.stdout.fileno()
    seen = b""
    deadline = time.monotonic() + 30
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            break
        chunk = os.read(fd, 65536)
        if not chunk:  # the child exited
            break
        seen += chunk
        # Complete lines only: a port or URL cut at a chunk's end would be wrong.
        found = re.search(pattern, seen[:seen.rfind(b"\n") + 1].decode(errors="replace"))
        if found:
            # Keep reading its output, so that a full pipe never stalls it.
            threading.Thread(target=child.stdout.read, daemon=True).start()
            return child, found
    _stop(child)
    raise RuntimeError(f"{shlex.join(argv[2:])} did not start")


def _stop(child: subprocess.Popen[bytes]) -> None:
    child.terminate()
    try:
        child.wait(timeout=10)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait(timeout=10)


def record(out_path: Path) -> None:
    agent = [sys.executable, "-m", "pep_agent"]
    with tempfile.TemporaryDirectory(prefix="pep-closure-") as tmp:
        work = Path(tmp)
        rec = work / "record"
        rec.mkdir()
        env = {k: v for k, v in os.environ.items() if not k.startswith("PEP_")}
        env.update(PEP_CLOSURE_RECORD=str(rec), PEP_LED_BACKEND="none",
                   PEP_ROOT=str(work / "cli-root"),
                   PYTHONPATH=os.pathsep.join(filter(None, [str(DATA),
                                                            env.get("PYTHONPATH")])))
        fcc = shlex.join([*agent, "sim", "fcc"])
        server, found = _start([*agent, "sim", "server", "--host", "127.0.0.1", "--port", "0",
                                "--db", str(work / "pep.sqlite")], env, work,
                               r"listening on (http://\S+)")
        url = found.group(1)
        root = str(work / "root")
        codes: dict[str, int] = {}
        try:
            common = ["--root", root, "--server", url, "--interface", "lo", "--no-reboot",
                      "--fcc-command", fcc, "--serial", SERIAL]
            steps: list[tuple[str, list[str]]] = [
                ("--help", ["--help"]),
                ("provision", ["provision", *common]),
                ("status", ["status", "--root", root, "--json"]),
                ("verify", ["verify", "--root", root, "--timeout", "2"]),
                ("reprovision", ["reprovision", *common, "--yes"]),
                ("led", ["led", "off", "--root", root]),
                ("get-enrollment-id", ["get-enrollment-id", "-s", SERIAL, "--server", url]),
                ("get-verification-key", ["get-verification-key", "-s", SERIAL,
                                          "--server", url]),
                ("list-enrollment-ids", ["list-enrollment-ids", "--server", url, "--all",
                                         "-e", "csv", "-f", str(work / "ids")]),
            ]
            for name, args in steps:
                codes[name] = _run([*agent, *args], env, work)
            fcc_child, port = _start([*agent, "sim", "fcc"], env, work,
                                     r"Client IP Address and Port :\s+(\S+):(\d+)")
            try:
                codes["get-one-identity"] = _run(
                    [*agent, "get-one-identity", "-s", "CLOSURE-GW-2", "-i", port.group(1),
                     "-p", port.group(2), "--server", url, "-o", str(work / "id.json")],
                    env, work)
            finally:
                _stop(fcc_child)
        finally:
            _stop(server)
        roles: dict[str, dict[str, str]] = {"agent": {}, "sim": {}}
        for path in sorted(rec.glob("*.tsv")):
            lines = path.read_text().splitlines()
            argv = lines[0].split("\t", 1)[1].split()
            role = "sim" if argv[argv.index("pep_agent") + 1:][:1] == ["sim"] else "agent"
            for line in lines[1:]:
                importer, module = line.split("\t")
                if module.split(".")[0] in RECORDER_ITSELF:
                    continue
                roles[role].setdefault(module, importer)
    names = {m.split(".")[0] for found in roles.values() for m in found}
    from importlib.metadata import distributions

    data = {
        "python": sysconfig.get_python_version(),
        "versions": dict(sorted((d.metadata["Name"], d.version) for d in distributions()
                                if d.metadata["Name"] not in ("pip", "setuptools"))),
        "exit_codes": codes,
        "origins": {name: _origin(name) for name in sorted(names)},
        "imports": {role: dict(sorted(found.items())) for role, found in roles.items()},
    }
    out_path.write_text(json.dumps(data, indent=1) + "\n")


def _origin(name: str) -> str:
    """stdlib, project or third-party:<top-level name>, as this interpreter resolves it."""
    import importlib.util

    if name in sys.builtin_module_names or name in ("<startup>", "__main__"):
        return "stdlib"
    if name == "pep_agent":
        return "project"
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        spec = None
    where = (spec.origin or "") if spec else ""
    if not where or "site-packages" in where or "dist-packages" in where:
        return "third-party"
    stdlib = sysconfig.get_paths()["stdlib"]
    return "stdlib" if where.startswith(stdlib) or where == "frozen" else "third-party"


# ---------------------------------------------------------------- derive

def _assignments(text: str, var: str) -> list[str]:
    """Words assigned (=, +=, :append, :class-target) to var, less those of its :remove,
    continuation lines joined. A reading of the text: what bitbake computes (classes,
    .bbappends of other layers, overrides) is `bitbake_rdepends`'s."""
    text = text.replace("\\\n", " ")
    words: list[str] = []
    removed: set[str] = set()
    pattern = re.compile(r"^" + re.escape(var) + r"(:append|:class-target|:remove)?"
                         r"\s*(\+?=|\?\?=|\?=)\s*\"([^\"]*)\"", re.M)
    for m in pattern.finditer(text):
        if m.group(1) == ":remove":
            removed.update(m.group(3).split())
            continue
        if m.group(2) == "=" and not m.group(1):
            words = []
        words += m.group(3).split()
    return [w.replace("${PYTHON_PN}", "python3") for w in words if w not in removed]


def bitbake_rdepends(text: str) -> dict[str, list[str]]:
    """Every package's RDEPENDS in the output of `bitbake -e RECIPE`: the values bitbake
    computed, with every class, .bbappend, override and :remove applied."""
    found: dict[str, list[str]] = {}
    # bitbake -e writes VAR="value", its newlines as " \\" line ends, " and $ escaped.
    for m in re.finditer(r'^RDEPENDS:([^\s=:"]+)="((?:[^"\\]|\\.)*)"$',
                         text.replace(" \\\n", " "), re.M):
        value = re.sub(r"\\(.)", r"\1", m.group(2))
        # Version constraints ("python3-foo (>= 1.0)") name no package.
        found[m.group(1)] = re.sub(r"\([^)]*\)", " ", value).split()
    return found


def rdepends_of(text: str, pn: str = "${PN}") -> list[str]:
    found = _assignments(text, f"RDEPENDS:{pn}") or _assignments(text, "RDEPENDS_${PN}")
    return [w.replace("${PN}", PN) for w in found if not w.startswith("${@")]


def _recipe_text(dirs: Iterable[Path], name: str) -> str | None:
    for d in dirs:
        for bb in sorted(d.glob(f"**/{name}_*.bb")):
            text = bb.read_text()
            for inc in re.findall(r"^require\s+(\S+\.inc)", text, re.M):
                incpath = bb.parent / inc.replace("${BPN}", name)
                if incpath.exists():
                    text += "\n" + incpath.read_text()
            return text
    return None


def derive(oe_meta: Path, meta_python: Path, branch: str, out_path: Path) -> None:
    manifest_path = oe_meta / "recipes-devtools/python/python3/python3-manifest.json"
    if not manifest_path.is_file():
        raise Usage(f"{manifest_path} is missing: not an oe-core meta directory")
    # The manifest opens with a comment block, which json does not allow.
    manifest = json.loads("".join(line for line in manifest_path.read_text().splitlines(True)
                                  if not line.lstrip().startswith("#")))
    prefix = "${libdir}/python${PYTHON_MAJMIN}/"
    modules: dict[str, str] = {}
    for pkg, entry in manifest.items():
        for f in entry["files"]:
            if not f.startswith(prefix):
                continue
            rel = f[len(prefix):]
            if rel.startswith("lib-dynload/"):
                name = rel.split("/", 1)[1].split(".", 1)[0]
            else:
                name = rel.rstrip("/").removesuffix(".py").replace("/", ".")
            if not re.search(r"[*$]|^site-packages|^config-", name):
                modules[name] = "python3-" + pkg
    stdlib_rdepends = {"python3-" + pkg: sorted("python3-" + r for r in entry["rdepends"])
                       for pkg, entry in manifest.items()}
    dirs = [oe_meta / "recipes-devtools/python", meta_python / "recipes-devtools/python"]
    recipes: dict[str, list[str]] = {}
    todo = list(FOLLOW)
    while todo:
        name = todo.pop()
        if name in recipes or name in stdlib_rdepends:
            continue
        text = _recipe_text(dirs, name)
        if text is None:
            continue
        recipes[name] = sorted(set(rdepends_of(text)))
        todo += recipes[name]
    data = {"branch": branch, "modules": dict(sorted(modules.items())),
            "stdlib_rdepends": stdlib_rdepends, "recipes": dict(sorted(recipes.items()))}
    out_path.write_text(json.dumps(data, indent=1) + "\n")


# ---------------------------------------------------------------- check

def own_imports(source: Path, tests: Path | None = None) -> dict[str, set[str]]:
    """Modules the project's own code names in import statements: agent, sim and ptest apart.

    An import inside `try: ... except ImportError` is optional (the code runs without it), and
    one under `if TYPE_CHECKING:` never runs: neither is a need.
    """
    import ast

    found: dict[str, set[str]] = {"agent": set(), "sim": set(), "ptest": set()}

    def optional(node: ast.AST) -> bool:
        if isinstance(node, ast.Try):
            # Optional only when the code goes on without it: a handler that raises makes the
            # import a need all the same.
            handlers = [h for h in node.handlers if h.type is not None
                        and {"ImportError", "ModuleNotFoundError"}
                        & set(re.findall(r"\w+", ast.unparse(h.type)))]
            return bool(handlers) and not any(isinstance(stmt, ast.Raise)
                                              for h in handlers for stmt in h.body)
        return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)

    def walk(node: ast.AST, role: str) -> None:
        for child in ast.iter_child_nodes(node):
            if optional(child):
                # The handlers and else branch of a try still run unguarded.
                for part in (getattr(child, "handlers", []) + getattr(child, "orelse", [])
                             + getattr(child, "finalbody", [])):
                    walk(part, role)
                continue
            if isinstance(child, ast.Import):
                found[role].update(a.name for a in child.names)
            elif isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
                found[role].add(child.module)
            walk(child, role)

    for path in sorted(source.rglob("*.py")):
        role = "sim" if "sim" in path.relative_to(source).parts[:1] else "agent"
        walk(ast.parse(path.read_text(), str(path)), role)
    if tests is not None:
        # What the ptest installs: the unit tests and the helpers beside them.
        for path in sorted([*tests.glob("*.py"), *(tests / "unit").glob("*.py")]):
            if path.name not in NOT_IN_PTEST:
                walk(ast.parse(path.read_text(), str(path)), "ptest")
        found["ptest"] = {m for m in found["ptest"]
                          if m.split(".")[0] not in ("tests", "pep_agent", "__future__")}
    return found


def provider(module: str, origins: dict[str, str], data: dict[str, Any]) -> str:
    top = module.split(".")[0]
    # A module the recording interpreter did not have (systemd-python where no libsystemd
    # was at hand) is the standard library's only if the branch's manifest has it.
    kind = origins.get(top) or ("stdlib" if top in data["modules"]
                                or top in sys.builtin_module_names else "third-party")
    if kind == "project":
        return PN + "-sim" if module.startswith("pep_agent.sim") else PN
    if kind == "third-party":
        return RECIPE_OF.get(top, "python3-" + top.lower().replace("_", "-"))
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        found = data["modules"].get(".".join(parts[:n]))
        if found:
            return str(found)
    # Built into the interpreter (sys, _io, ...) or loaded before any package could matter.
    return "python3-core"


def closure(start: Iterable[str], graph: dict[str, list[str]]) -> set[str]:
    seen: set[str] = set()
    todo = list(start)
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo += graph.get(name, [])
    return seen


def check(data: dict[str, Any], imports: dict[str, Any], rdepends: dict[str, list[str]],
          layer_recipes: dict[str, list[str]], own_code: dict[str, set[str]],
          ) -> tuple[list[str], list[str]]:
    """(gaps, superfluous), each a list of one-line findings. `rdepends`: the RDEPENDS of
    pep-agent, -sim and -ptest (from the recipe's text, or as bitbake computed them)."""
    origins = imports["origins"]
    graph: dict[str, list[str]] = {**data["stdlib_rdepends"], **data["recipes"],
                                   **layer_recipes}
    graph[PN] = rdepends.get(PN, [])
    graph[PN + "-sim"] = rdepends.get(PN + "-sim", [])
    gaps: list[str] = []
    superfluous: list[str] = []
    for role, pkg in (("agent", PN), ("sim", PN + "-sim")):
        found = imports["imports"][role]
        have = closure([pkg], graph)
        need = {m: provider(m, origins, data) for m in found}
        for module, prov in sorted(need.items()):
            if prov not in have:
                gaps.append(f"{pkg}: {module} (imported by {found[module]}) needs {prov}, "
                            "which its RDEPENDS do not bring")
        # What the package's own code imports is listed directly, not left to happen to come
        # with a library; what only the libraries import belongs in their recipes.
        own = {provider(m, origins, data) for m in own_code[role]}
        own -= {PN, PN + "-sim"}
        for prov in sorted(own - set(graph[pkg])):
            if not (role == "sim" and prov in have and prov in closure([PN], graph)):
                gaps.append(f"{pkg}: its own code imports what {prov} provides; "
                            "list it in its RDEPENDS")
        for dep in graph[pkg]:
            if dep in own or not dep.startswith("python3-"):
                continue
            rest = closure([d for d in graph[pkg] if d != dep], graph)
            if all(prov in rest or prov == pkg for prov in need.values()):
                superfluous.append(f"{pkg}: {dep} (its own code imports nothing of it, and "
                                   "every import is covered without it)")
    # A name that is neither a standard-library package nor a recipe the data knows is a typo
    # or a package the release lacks (bitbake says so too, but only where it can run).
    for pkg in (PN, PN + "-sim", PN + "-ptest"):
        for dep in rdepends.get(pkg, []):
            if dep.startswith("python3-") and dep not in graph:
                gaps.append(f"{pkg}: {dep} is not a package this release's manifest or "
                            "recipes provide")
    # The ptest: what the installed tests import (statically: the tests are not run here).
    graph[PN + "-ptest"] = rdepends.get(PN + "-ptest", [])
    have = closure([PN + "-ptest"], graph)
    for module in sorted(own_code.get("ptest", ())):
        prov = provider(module, origins, data)
        if prov not in have:
            gaps.append(f"{PN}-ptest: the tests import {module}, which needs {prov}; "
                        "its RDEPENDS do not bring it")
    # The layer's own recipes must bring what their own code imports.
    for role in ("agent", "sim"):
        found = imports["imports"][role]
        for module, importer in sorted(found.items()):
            owner = provider(importer, origins, data)
            if owner in layer_recipes:
                prov = provider(module, origins, data)
                if prov != owner and prov not in closure([owner], graph):
                    gaps.append(f"{owner}: {module} (imported by {importer}) needs {prov}, "
                                "which its RDEPENDS do not bring")
    return sorted(set(gaps)), sorted(set(superfluous))


def layer_recipes(layer: Path) -> dict[str, list[str]]:
    found = {}
    for bb in sorted(layer.glob("recipes-*/*/python3-*.bb")):
        found[bb.name.split("_")[0]] = rdepends_of(bb.read_text())
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("record", help="run the commands, write the imports")
    r.add_argument("--out", type=Path, required=True,
                   help="e.g. closure/imports-kirkstone.json, recorded with that branch's "
                        "Python and library versions")
    d = sub.add_parser("derive", help="a branch's module and RDEPENDS map")
    d.add_argument("--oe-core", type=Path, required=True, help="oe-core's (or poky's) meta/")
    d.add_argument("--meta-python", type=Path, required=True)
    d.add_argument("--branch", required=True)
    d.add_argument("--out", type=Path)
    c = sub.add_parser("check", help="fail on an import RDEPENDS do not cover")
    c.add_argument("branches", nargs="*", default=["kirkstone", "scarthgap"])
    c.add_argument("--data", type=Path, default=DATA, help="where <branch>.json are")
    c.add_argument("--imports", type=Path, default=DATA,
                   help="where imports-<branch>.json are")
    c.add_argument("--recipe", type=Path, default=RECIPE)
    c.add_argument("--source", type=Path, default=HERE.parents[1] / "pep_agent",
                   help="the project's package, for what its own code imports")
    c.add_argument("--tests", type=Path, default=HERE.parents[1] / "tests",
                   help="the project's tests, for what the ptest imports")
    c.add_argument("--bitbake-env", type=Path, action="append", default=[],
                   metavar="FILE",
                   help="the output of `bitbake -e pep-agent` (and of the layer's other "
                        "recipes): the RDEPENDS bitbake computed replace the recipe's text "
                        "(one branch only)")
    args = parser.parse_args(argv)
    try:
        if args.cmd == "record":
            record(args.out)
            return 0
        if args.cmd == "derive":
            derive(args.oe_core, args.meta_python, args.branch,
                   args.out or DATA / f"{args.branch}.json")
            return 0
        status = 0
        recipe = _read(args.recipe)
        rdepends = {pkg: rdepends_of(recipe, "${PN}" + pkg[len(PN):])
                    for pkg in (PN, PN + "-sim", PN + "-ptest")}
        own = layer_recipes(HERE)
        source = "the recipe's text"
        if args.bitbake_env:
            if len(args.branches) != 1:
                raise Usage("--bitbake-env: name the one branch that bitbake parsed")
            computed: dict[str, list[str]] = {}
            for path in args.bitbake_env:
                computed.update(bitbake_rdepends(_read(path)))
            if PN not in computed:
                raise Usage(f"no RDEPENDS:{PN} in {', '.join(map(str, args.bitbake_env))}: "
                            f"not the output of `bitbake -e {PN}`")
            rdepends = {pkg: computed.get(pkg, []) for pkg in rdepends}
            own = {name: computed.get(name, deps) for name, deps in own.items()}
            source = "bitbake's values"
        own_code = own_imports(args.source, args.tests)
        for branch in args.branches:
            data = json.loads(_read(args.data / f"{branch}.json"))
            imports = json.loads(_read(args.imports / f"imports-{branch}.json"))
            gaps, extra = check(data, imports, rdepends, own, own_code)
            for line in gaps:
                print(f"check-closure: {branch}: MISSING {line}")
            for line in extra:
                print(f"check-closure: {branch}: superfluous {line}")
            print(f"check-closure: {branch}: {'FAILED' if gaps else 'OK'} "
                  f"({sum(len(v) for v in imports['imports'].values())} imports, "
                  f"recorded on Python {imports['python']}; RDEPENDS from {source})")
            status = status or (1 if gaps else 0)
        return status
    except Usage as err:
        print(f"check-closure: {err}", file=sys.stderr)
        return 2


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError as err:
        raise Usage(f"cannot read {path}: {err.strerror}") from None


if __name__ == "__main__":
    sys.exit(main())
