#!/usr/bin/env bash
# Parses this layer with bitbake against checkouts of poky and meta-openembedded and checks
# that pep-agent's runtime dependencies resolve:
#   1. `bitbake -p`            every recipe of every configured layer parses;
#   2. `bitbake -g pep-agent`  the task graph builds, i.e. every RDEPENDS of every package the
#                              recipe makes (pep-agent, -sim, -ptest) has a provider;
#   3. `bitbake -e pep-agent`  (and python3-typer) the RDEPENDS bitbake computes for each
#                              package, every class, .bbappend, override and :remove applied;
#   4. check-closure.py        every module the agent's commands import (recorded with the
#                              branch's Python and versions, closure/imports-<branch>.json) is
#                              provided by those RDEPENDS of pep-agent (and -sim, -ptest),
#                              followed through those of the recipes they list, as this
#                              checkout's python3-manifest.json and recipes split and declare
#                              them. (The project's unit test runs the same check on the
#                              recipe's text: a fast approximation that sees no other layer.)
# Fails (exit 1) on any parse error, `Nothing RPROVIDES`, or a module no package provides.
#
# Usage: check-layer.sh [--python PYTHON] [--user USER] [--layer DIR]... POKY_DIR META_OE_DIR
#                       BUILD_DIR
#
#   POKY_DIR      a poky checkout at the branch to check (e.g. scarthgap)
#   META_OE_DIR   meta-openembedded at the same branch
#   BUILD_DIR     created if missing; holds conf/, the layer copy, bitbake's cache and tmp/
#   --python      the interpreter bitbake runs on (kirkstone's bitbake wants <= 3.10; default:
#                 python3 on PATH). It must be runnable by the build user and installed at
#                 its configured prefix: bitbake starts its server with argv[0] set to
#                 `bitbake-server`, so a copied interpreter cannot find its standard library.
#   --user        bitbake refuses to run as root: when started as root the script creates this
#                 unprivileged user if needed (default: oebuild) and runs the checks as it.
#   --layer       one more layer for the build (repeatable), e.g. a distribution's own layer
#                 with its .bbappends: the check then judges pep-agent as that layer set
#                 builds it. Copied into BUILD_DIR/layers/.
#
# Side effects: writes BUILD_DIR; as root, may add a system user and chown BUILD_DIR to it.
# Nothing is fetched or built (BB_NO_NETWORK): parsing needs no network.
# Not run by CI: CI machines cannot reach the poky and meta-openembedded repositories; the
# closure check's unit test (tests/unit/test_layer_closure.py) runs there on the committed
# closure/*.json.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
python=python3
user=oebuild
extra=()
while [ $# -gt 0 ]; do
  case $1 in
    --python) python=$2; shift 2 ;;
    --layer) [ -f "$2/conf/layer.conf" ] || { echo "check-layer: $2 is not a layer (no conf/layer.conf)" >&2; exit 2; }
             extra+=("$(cd "$2" && pwd)"); shift 2 ;;
    --user) user=$2; shift 2 ;;
    -h|--help) sed -n '2,30p' "$0"; exit 0 ;;
    -*) echo "check-layer: unknown option $1" >&2; exit 2 ;;
    *) break ;;
  esac
done
if [ $# -ne 3 ]; then
  echo "usage: check-layer.sh [--python PYTHON] [--user USER] [--layer DIR]... POKY_DIR META_OE_DIR BUILD_DIR" >&2
  exit 2
fi
poky=$(cd "$1" && pwd)
metaoe=$(cd "$2" && pwd)
mkdir -p "$3"
build=$(cd "$3" && pwd)
locale -a 2>/dev/null | grep -qi '^en_US.utf-\?8$' || {
  echo "check-layer: bitbake needs the en_US.UTF-8 locale (Debian: locale-gen after enabling it in /etc/locale.gen)" >&2
  exit 2
}
python=$(command -v "$python") || { echo "check-layer: no interpreter $python" >&2; exit 2; }
for f in "$poky/bitbake/bin/bitbake" "$poky/meta/conf/layer.conf" \
         "$metaoe/meta-oe/conf/layer.conf" "$metaoe/meta-python/conf/layer.conf"; do
  [ -e "$f" ] || { echo "check-layer: $f is missing: not a poky / meta-openembedded checkout" >&2; exit 2; }
done

# A copy of the layer (with these scripts), so the build user needs no access to the
# project's checkout and the check sees exactly the layer's files.
layer=$build/meta-pep-agent
if [ "$here" != "$layer" ]; then
  rm -rf "$layer" "$build/project"
  mkdir -p "$layer" "$build/project"
  (cd "$here" && tar -c --exclude=__pycache__ .) | tar -x -C "$layer"
  # The agent's source and tests, for what its own code and its ptest import (closure check).
  (cd "$here/../.." && tar -c --exclude=__pycache__ pep_agent tests/unit tests/*.py) \
    | tar -x -C "$build/project"
fi

# The extra layers, copied for the same reason.
relaunch=() extra_lines=""
for dir in "${extra[@]}"; do
  dest=$build/layers/$(basename "$dir")
  if [ "$dir" != "$dest" ]; then
    rm -rf "$dest"
    mkdir -p "$dest"
    (cd "$dir" && tar -c --exclude=__pycache__ .) | tar -x -C "$dest"
  fi
  relaunch+=(--layer "$dest")
  extra_lines+="  $dest \\"$'\n'
done

if [ "$(id -u)" -eq 0 ]; then
  # bitbake's sanity check refuses root, and rightly: a parse must not need it.
  id "$user" >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin "$user"
  chown -R "$user": "$build"
  if ! runuser -u "$user" -- "$python" -c pass; then
    echo "check-layer: $user cannot run $python; pass --python with an interpreter it can run" >&2
    exit 2
  fi
  exec runuser -u "$user" -- env -i PATH="$PATH" LANG=C.UTF-8 HOME="$build" \
    "$layer/check-layer.sh" --python "$python" "${relaunch[@]}" "$poky" "$metaoe" "$build"
fi


# bitbake runs `python3` from PATH: put the chosen interpreter first.
mkdir -p "$build/bin" "$build/conf"
ln -sf "$python" "$build/bin/python3"
export PATH="$build/bin:$PATH" LANG=C.UTF-8

# A conf file is rewritten only when its text changes: bitbake keys its parse cache to the
# configuration's files, their times included, so an unchanged rerun reuses the parse.
keep() { if cmp -s "$1.new" "$1"; then rm "$1.new"; else mv "$1.new" "$1"; fi; }
cat > "$build/conf/bblayers.conf.new" <<EOF
POKY_BBLAYERS_CONF_VERSION = "2"
BBPATH = "\${TOPDIR}"
BBFILES ?= ""
BBLAYERS = " \\
  $poky/meta \\
  $poky/meta-poky \\
  $metaoe/meta-oe \\
  $metaoe/meta-python \\
  $layer \\
$extra_lines"
EOF
keep "$build/conf/bblayers.conf"
cat > "$build/conf/local.conf.new" <<EOF
CONF_VERSION = "2"
MACHINE = "qemux86-64"
DISTRO = "poky"
DISTRO_FEATURES:append = " systemd ptest"
INIT_MANAGER = "systemd"
BB_NO_NETWORK = "1"
# The recipe skips itself without a source; its pinned SRCREV keeps the parse off the network.
PEP_AGENT_GIT = "git://git.example.invalid/pep-agent.git;protocol=https;branch=main"
EOF
keep "$build/conf/local.conf"

cd "$build"
# shellcheck disable=SC1091
set +u; . "$poky/oe-init-build-env" "$build" >/dev/null; set -u
series=$(sed -n 's/^LAYERSERIES_CORENAMES = "\(.*\)"/\1/p' "$poky/meta/conf/layer.conf")
echo "== $series: bitbake on python $("$python" -c 'import platform; print(platform.python_version())')"

log=$build/check-layer.log
: > "$log"
status=0
# Each step's output goes to the log (or to OUT, for `bitbake -e`), its time to the screen.
run() {
  local out=$log
  if [ "$1" = "--to" ]; then out=$2; shift 2; fi
  echo "-- $*" | tee -a "$log"
  local began=$SECONDS
  if ! "$@" >>"$out" 2>>"$log"; then status=1; echo "   failed" | tee -a "$log"; fi
  echo "   $((SECONDS - began)) s" | tee -a "$log"
}
run bitbake -p
run bitbake -g pep-agent
# What bitbake computes, not what the recipe's text says: a .bbappend in any layer, an
# override or a :remove changes the packages' RDEPENDS without changing the recipe.
envs=$build/bitbake-env
rm -rf "$envs"
mkdir -p "$envs"
env_args=()
for recipe in pep-agent python3-typer; do
  run --to "$envs/$recipe" bitbake -e "$recipe"
  env_args+=(--bitbake-env "$envs/$recipe")
done
# The closure check, against this checkout's standard-library split and recipes.
mkdir -p "$build/closure"
run "$python" "$layer/check-closure.py" derive --oe-core "$poky/meta" \
  --meta-python "$metaoe/meta-python" --branch "$series" --out "$build/closure/$series.json"
echo "-- check-closure.py check $series --bitbake-env ..."
if ! "$python" "$layer/check-closure.py" check "$series" --data "$build/closure" \
     --source "$build/project/pep_agent" --tests "$build/project/tests" "${env_args[@]}" \
     | tee -a "$log"; then
  status=1
fi
grep -E '^(ERROR|WARNING):' "$log" | grep -v 'Host distribution' || true
grep -q 'Nothing RPROVIDES\|Nothing PROVIDES\|ParseError\|^ERROR:' "$log" && status=1
if [ $status -eq 0 ]; then
  grep -E '^Parsing recipes|^Parsing of|recipes parsed' "$log" | tail -1 || true
  echo "pep-agent task graph: $(wc -l < pn-buildlist) recipes in pn-buildlist"
fi
if [ $status -ne 0 ]; then
  echo "check-layer: FAILED; see $log" >&2
  exit 1
fi
echo "check-layer: OK"
