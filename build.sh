#!/usr/bin/env bash
# build.sh: build dist/infr, infr as one executable file (a shiv zipapp).
#
#   ./build.sh                 build dist/infr from this checkout
#   ./build.sh ipxe [ARGS...]  build a custom iPXE image: runs ipxe/build-ipxe.sh ARGS
#   PYTHON=python3.11 ./build.sh   build with (and for) that interpreter
#
# dist/infr needs no virtualenv: it carries infr and every dependency and runs with
# the machine's own python3.11 (Debian 12's /usr/bin/python3.11 will do). Compiled
# dependencies (cffi, PyYAML, MarkupSafe, charset-normalizer) are built for the
# Python that builds, so the shebang names that minor version: `python3.11` here.
# On its first run dist/infr unpacks itself into ~/.shiv (SHIV_ROOT overrides) and
# compiles its bytecode (1.5-3.5 s here); later runs start from there.
#
# Why shiv. Measured on this 2-CPU machine with bench/bench_dist.py (--compare builds
# the others): medians of 11 runs on a 3-host state, after each file's first run,
# against the installed infr (the dev venv's), dist files run by /usr/bin/python3.11:
#
#                              infr --help      infr hosts      first run
#   shiv zipapp                1.22-1.29x       1.08-1.17x      1.5-3.5 s
#   pex --venv --sh-boot       2.4x (quiet) .. 44x (loaded)     2.3-2.7 s
#   pex (zipapp)               7.6x (quiet) .. 36x (loaded)     1.7-3.3 s
#   PyInstaller --onefile      7.5-7.7x         5.4-6.8x        0.6-0.7 s, and it unpacks 26 MB on every run
#
# Only shiv starts within the 1.5x of the installed infr that issue 2 asks for.
# PyInstaller would carry its own Python, but --onefile unpacks itself on every run,
# and infr's lazily imported command modules would each need declaring to it.
# Figures and method: bench/README.md.
set -euo pipefail

SHIV_VERSION=1.0.8
here=$(cd "$(dirname "$0")" && pwd)

die() {
    echo "build.sh: error: $*" >&2
    exit 1
}

say() {
    echo "build.sh: $*" >&2
}

usage() {
    sed -n '2,6s/^# \{0,1\}//p' "$0"
}

build_ipxe() {
    local script="$here/ipxe/build-ipxe.sh"
    [ -f "$script" ] || die "$script does not exist: this checkout has no iPXE build script"
    exec bash "$script" "$@"
}

build_infr() {
    local python=${PYTHON:-python3}
    command -v "$python" >/dev/null || die "no $python on PATH (set PYTHON=/path/to/python3.11 or later)"
    local version
    version=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
    "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
        die "$python is Python $version; infr needs 3.11 or later"
    "$python" -c 'import venv' 2>/dev/null || die "$python has no venv module (Debian: apt-get install python3-venv)"

    local tmp
    tmp=$(mktemp -d "${TMPDIR:-/tmp}/infr-build.XXXXXX")
    # shellcheck disable=SC2064  # expand now: $tmp is local
    trap "rm -rf '$tmp'" EXIT

    say "creating a build venv with shiv $SHIV_VERSION (Python $version)"
    "$python" -m venv "$tmp/venv" || die "could not create a venv with $python"
    "$tmp/venv/bin/python" -m pip install --quiet --disable-pip-version-check "shiv==$SHIV_VERSION" ||
        die "could not install shiv $SHIV_VERSION from the package index"

    say "building the zipapp (infr and its dependencies from $here)"
    # pip builds infr in a copy of the tree so the checkout gets no build/ or egg-info.
    mkdir "$tmp/src"
    (cd "$here" && tar --exclude=./.venv --exclude=./dist --exclude=./build --exclude='*.egg-info' \
        --exclude=./.git --exclude='__pycache__' -cf - .) | tar -xf - -C "$tmp/src"
    "$tmp/venv/bin/shiv" \
        --console-script infr \
        --output-file "$tmp/infr" \
        --python "/usr/bin/env python$version" \
        --compile-pyc \
        --reproducible \
        --disable-pip-version-check --quiet \
        "$tmp/src" || die "shiv failed (see pip's messages above)"

    say "checking the result"
    local out
    out=$(SHIV_ROOT="$tmp/shiv-root" "$python" "$tmp/infr" --version 2>&1) || die "dist/infr does not start: $out"
    SHIV_ROOT="$tmp/shiv-root" "$python" "$tmp/infr" --help >/dev/null || die "dist/infr --help failed"

    mkdir -p "$here/dist"
    mv -f "$tmp/infr" "$here/dist/infr"
    chmod 755 "$here/dist/infr"
    say "built dist/infr ($(du -h "$here/dist/infr" | cut -f1), $out): needs python$version on the target machine"
}

case "${1:-}" in
    "") build_infr ;;
    ipxe)
        shift
        build_ipxe "$@"
        ;;
    -h | --help | help) usage ;;
    *) die "unknown argument '$1' (usage: ./build.sh, or ./build.sh ipxe [ARGS])" ;;
esac
