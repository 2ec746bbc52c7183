#!/bin/sh
# The real FCC, built once by build.sh and kept in the project's cache, where a rerun of CI and
# `make test` find it.
#
# usage: cached.sh              print the cached build's path; exit 1 when there is none
#        cached.sh -b ARCHIVES  build it from the source archives in ARCHIVES (build.sh -a)
#                               unless it is cached, then print its path
# The cache is $PEP_AGENT_CACHE, else $XDG_CACHE_HOME/pep-agent, else ~/.cache/pep-agent; the
# build is real-fcc/KEY/factory-configurator-client-example.elf below it. KEY is the sha256 of
# build.sh, which pins the sources' revisions and the archives' sha256 sums: other sources or
# another build script make another key. Two builders of one key take turns (flock).
# Exit status: 0 printed a path; 1 none cached (without -b), or the build failed; 2 build.sh's
# (a tool or an archive missing, a checksum mismatch).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
archives=""
while getopts b: opt; do
    case $opt in
        b) archives=$OPTARG ;;
        *) echo "usage: $0 [-b ARCHIVES]" >&2; exit 2 ;;
    esac
done
cache=${PEP_AGENT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pep-agent}/real-fcc
key=$(sha256sum "$here/build.sh" | cut -c1-16)
elf="$cache/$key/factory-configurator-client-example.elf"

if [ -z "$archives" ]; then
    [ -x "$elf" ] || exit 1
    echo "$elf"
    exit 0
fi

mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9
if [ ! -x "$elf" ]; then
    work="$cache/build-$key.$$"
    trap 'rm -rf "$work"' EXIT
    echo "cached.sh: building the real FCC from $archives into $cache/$key" >&2
    # build.sh prints its result's path last; the build tree is not kept.
    "$here/build.sh" -a "$archives" -o "$work" >&2
    mkdir -p "$work/result"
    cp "$work/factory-configurator-client-example.elf" "$work/result/"
    rm -rf "${cache:?}/$key"
    mv "$work/result" "$cache/$key"
fi
echo "$elf"
