#!/bin/sh
# Build the real factory-configurator-client-example natively for x86-64 Linux, for tests that
# compare `pep-agent sim fcc` with it (make realfcc). Nothing of it is part of pep-agent.
#
# usage: build.sh [-s SOURCES] [-o OUTDIR] [-j JOBS]
#   SOURCES  a directory holding checkouts (or bare clones) named
#            factory-configurator-client-example, mbed-cloud-client and mbedtls;
#            without -s they are cloned from GitHub (needs network access).
#   OUTDIR   where the build tree and the result go (default ./real-fcc-build).
# Prints the path of the built program (OUTDIR/factory-configurator-client-example.elf) last.
#
# Pinned revisions: the example 4.10.0; mbed-cloud-client at the commit its
# mbed-cloud-client.lib names (tag 4.10.0); mbedtls 2.25.0 as its pal-platform.json names.
# Needs git, cmake (>= 3.5), make, gcc, g++. Without PSA/Parsec (linux-config.cmake).
set -eu

EXAMPLE_REV=4.10.0
CLIENT_REV=d7edc529ed3722c811ff401440ef58ea980bf543
MBEDTLS_REV=mbedtls-2.25.0
TARGET=x86_x64_NativeLinux_mbedtls

sources=""
out="$PWD/real-fcc-build"
jobs=$(nproc 2>/dev/null || echo 2)
while getopts s:o:j: opt; do
    case $opt in
        s) sources=$(cd "$OPTARG" && pwd) ;;
        o) out=$OPTARG ;;
        j) jobs=$OPTARG ;;
        *) echo "usage: $0 [-s SOURCES] [-o OUTDIR] [-j JOBS]" >&2; exit 2 ;;
    esac
done
for tool in git cmake make gcc g++; do
    command -v "$tool" >/dev/null || { echo "build.sh: $tool is missing" >&2; exit 2; }
done
mkdir -p "$out"
out=$(cd "$out" && pwd)

# Export repository REPO at REV into directory DEST (replaced when it exists).
export_rev() {
    repo=$1 rev=$2 dest=$3
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
