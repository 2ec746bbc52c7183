#!/bin/sh
# Build the real factory-configurator-client-example natively for x86-64 Linux, for tests that
# compare `pep-agent sim fcc` with it and provision through it (make realfcc, make test).
# Nothing of it is part of pep-agent.
#
# usage: build.sh [-a ARCHIVES | -s SOURCES] [-o OUTDIR] [-j JOBS]
#   ARCHIVES a directory holding the three source archives below and their SHA256SUMS (each
#            archive is `git archive` of the pinned commit, its top folder named after the
#            repository). Their sums are checked against SHA256SUMS and against the sums
#            pinned here before anything is unpacked; a mismatch stops the build.
#   SOURCES  a directory holding checkouts (or bare clones) named
#            factory-configurator-client-example, mbed-cloud-client and mbedtls.
#            Without -a and -s they are cloned from GitHub (needs network access).
#   OUTDIR   where the build tree and the result go (default ./real-fcc-build).
# Prints the path of the built program (OUTDIR/factory-configurator-client-example.elf) last.
#
# Pinned revisions: the example 4.10.0; mbed-cloud-client at the commit its
# mbed-cloud-client.lib names (tag 4.10.0); mbedtls 2.25.0 as its pal-platform.json names.
# Needs cmake (>= 3.5), make, gcc, g++; git for -s and cloning, tar, gzip and sha256sum for -a.
# Without PSA/Parsec (linux-config.cmake). Exit status: 0 built, 1 the build failed, 2 a tool,
# a source or an archive is missing or does not match.
set -eu

EXAMPLE_REV=4.10.0
CLIENT_REV=d7edc529ed3722c811ff401440ef58ea980bf543
MBEDTLS_REV=mbedtls-2.25.0
TARGET=x86_x64_NativeLinux_mbedtls

# The archives -a takes: name, repository (its top folder), sha256.
ARCHIVES="factory-configurator-client-example-4.10.0.tar.gz factory-configurator-client-example 4fee243603f0a34280dc6551771d08cd1c6a2e34f644ce0bc692d981f8e648e1
mbed-cloud-client-d7edc529.tar.gz mbed-cloud-client db863bf761a2f95e2622199d2e66edf17cbbe8730b335d89f232bbd2c67e6fe6
mbedtls-2.25.0.tar.gz mbedtls c8774642b1428cbf01940dd1043a3eacadd9a30441b091321ddcbfaee6371cd9"

sources=""
archives=""
out="$PWD/real-fcc-build"
jobs=$(nproc 2>/dev/null || echo 2)
usage="usage: $0 [-a ARCHIVES | -s SOURCES] [-o OUTDIR] [-j JOBS]"
while getopts a:s:o:j: opt; do
    case $opt in
        a) archives=$(cd "$OPTARG" 2>/dev/null && pwd) ||
               { echo "build.sh: no archive directory $OPTARG" >&2; exit 2; } ;;
        s) sources=$(cd "$OPTARG" 2>/dev/null && pwd) ||
               { echo "build.sh: no source directory $OPTARG" >&2; exit 2; } ;;
        o) out=$OPTARG ;;
        j) jobs=$OPTARG ;;
        *) echo "$usage" >&2; exit 2 ;;
    esac
done
[ -z "$archives" ] || [ -z "$sources" ] || { echo "$usage" >&2; exit 2; }
if [ -n "$archives" ]; then tools="tar gzip sha256sum"; else tools=git; fi
for tool in $tools cmake make gcc g++; do
    command -v "$tool" >/dev/null || { echo "build.sh: $tool is missing" >&2; exit 2; }
done

# Every archive's sum, checked before any is unpacked: the one SHA256SUMS lists and the one
# pinned above must both be the archive's own.
if [ -n "$archives" ]; then
    [ -f "$archives/SHA256SUMS" ] ||
        { echo "build.sh: $archives/SHA256SUMS is missing" >&2; exit 2; }
    while read -r name repo pinned; do
        [ -f "$archives/$name" ] || { echo "build.sh: $archives/$name is missing" >&2; exit 2; }
        actual=$(sha256sum "$archives/$name" | cut -d' ' -f1)
        listed=$(awk -v n="$name" '$2 == n || $2 == "*" n { print $1 }' "$archives/SHA256SUMS")
        [ "$actual" = "$listed" ] || { echo "build.sh: $name: checksum mismatch: its sha256 is" \
            "$actual, SHA256SUMS says ${listed:-nothing}" >&2; exit 2; }
        [ "$actual" = "$pinned" ] || { echo "build.sh: $name: checksum mismatch: its sha256 is" \
            "$actual, build.sh pins $pinned (other sources than the pinned $repo)" >&2; exit 2; }
    done <<SUMS
$ARCHIVES
SUMS
fi
mkdir -p "$out"
out=$(cd "$out" && pwd)

# Export repository REPO at REV into directory DEST (replaced when it exists).
export_rev() {
    repo=$1 rev=$2 dest=$3
    if [ -n "$archives" ]; then
        name=$(echo "$ARCHIVES" | awk -v r="$repo" '$2 == r { print $1 }')
        rm -rf "$dest"
        mkdir -p "$dest"
        tar -xzf "$archives/$name" -C "$dest" --strip-components=1 "$repo" ||
            { echo "build.sh: $name does not unpack into $repo/" >&2; exit 2; }
        return
    fi
    if [ -n "$sources" ]; then
        src="$sources/$repo"
        [ -d "$src" ] || { echo "build.sh: $src is missing" >&2; exit 2; }
        gitdir=$(git -C "$src" rev-parse --absolute-git-dir)
    else
        gitdir="$out/clones/$repo.git"
        if [ ! -d "$gitdir" ]; then
            case $repo in
                mbedtls) url=https://github.com/ARMmbed/mbedtls.git ;;
                *) url=https://github.com/PelionIoT/$repo.git ;;
            esac
            git clone --bare --quiet "$url" "$gitdir"
        fi
    fi
    git --git-dir="$gitdir" rev-parse --verify --quiet "$rev^{commit}" >/dev/null ||
        { echo "build.sh: $repo has no revision $rev" >&2; exit 2; }
    rm -rf "$dest"
    mkdir -p "$dest"
    git --git-dir="$gitdir" archive "$rev" | tar -x -C "$dest"
}

tree="$out/tree"
export_rev factory-configurator-client-example "$EXAMPLE_REV" "$tree"
pinned=$(sed -n 's/.*#\([0-9a-f]\{40\}\).*/\1/p' "$tree/mbed-cloud-client.lib")
[ "$pinned" = "$CLIENT_REV" ] ||
    { echo "build.sh: the example pins mbed-cloud-client $pinned, expected $CLIENT_REV" >&2; exit 2; }
export_rev mbed-cloud-client "$CLIENT_REV" "$tree/mbed-cloud-client"
export_rev mbedtls "$MBEDTLS_REV" "$tree/pal-platform/Middleware/mbedtls/mbedtls"

# glibc 2.34 and later make PTHREAD_STACK_MIN a sysconf() call under _GNU_SOURCE, which the
# preprocessor cannot compare; the value older glibc had on x86-64 (16384) stands in for it.
sed -i 's/< PTHREAD_STACK_MIN)/< 16384)/' \
    "$tree/mbed-cloud-client/mbed-client-pal/Configs/pal_config/Linux/Linux_default.h"

# What pal-platform.py's "generate" step writes, without its Python dependencies and without
# fetching the middleware this build does not use (PSA storage, Parsec, curl).
build="$tree/__$TARGET"
mkdir -p "$build"
cat > "$build/autogen.cmake" <<CMAKE
set (MBED_CLOUD_CLIENT_SDK )
set (MBED_CLOUD_CLIENT_OS Linux_Native)
set (MBED_CLOUD_CLIENT_DEVICE x86_x64)
set (MBED_CLOUD_CLIENT_MIDDLEWARE mbedtls)
set (MBED_CLOUD_CLIENT_TOOLCHAIN  )
set (MBED_CLOUD_CLIENT_BUILD_SYS_MIN_VER 2)
set (MBED_CLOUD_CLIENT_NATIVE_SDK False)
CMAKE
cp "$tree/pal-platform/mbedCloudClientCmake.txt" "$build/CMakeLists.txt"
[ -f "$tree/CMakeLists.txt" ] || echo 'ADDSUBDIRS()' > "$tree/CMakeLists.txt"

cd "$build"
cmake -G "Unix Makefiles" -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_TOOLCHAIN_FILE=../pal-platform/Toolchain/GCC/GCC.cmake \
    -DEXTERNAL_DEFINE_FILE=../linux-config.cmake >"$out/cmake.log" 2>&1 ||
    { tail -n 30 "$out/cmake.log" >&2; echo "build.sh: cmake failed (see $out/cmake.log)" >&2; exit 1; }
make -j "$jobs" factory-configurator-client-example.elf >"$out/make.log" 2>&1 ||
    { tail -n 30 "$out/make.log" >&2; echo "build.sh: make failed (see $out/make.log)" >&2; exit 1; }
elf=$(find "$build" -name factory-configurator-client-example.elf -type f | head -n 1)
[ -n "$elf" ] || { echo "build.sh: no factory-configurator-client-example.elf built" >&2; exit 1; }
cp "$elf" "$out/factory-configurator-client-example.elf"
echo "$out/factory-configurator-client-example.elf"
