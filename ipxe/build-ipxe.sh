#!/usr/bin/env bash
# Build a custom iPXE disk image with infr's iPXE script and preseed embedded (the
# original Infr's way), for users who have iPXE's source. infr runs it when given an
# iPXE source directory; it works by hand too.
#
# usage: ipxe/build-ipxe.sh IPXE_SOURCE SCRIPT PRESEED OUT
#   IPXE_SOURCE  an iPXE source checkout: the directory holding src/Makefile
#   SCRIPT       the iPXE script to embed (infr writes it as embed.ipxe)
#   PRESEED      the preseed; embedded as preseed.cfg, which the script hands to d-i
#   OUT          where to copy the built bin/ipxe.usb (an MBR disk image to dd)
set -euo pipefail

die() {
    echo "build-ipxe.sh: $*" >&2
    exit 1
}

if [ $# -eq 0 ] || [ -z "${1:-}" ]; then
    die "no iPXE source given. infr does not need one: by default it boots Debian's prebuilt
iPXE (package ipxe). To embed the preseed in your own build instead, clone iPXE
(git clone https://github.com/ipxe/ipxe) and pass that directory as IPXE_SOURCE."
fi
[ $# -eq 4 ] || die "usage: $0 IPXE_SOURCE SCRIPT PRESEED OUT"
source_dir=$1 script=$2 preseed=$3 out=$4

[ -f "$source_dir/src/Makefile" ] || die "$source_dir is not an iPXE source checkout (no src/Makefile)"
[ -f "$script" ] || die "no iPXE script at $script"
[ -f "$preseed" ] || die "no preseed at $preseed"

# iPXE names embedded images after their file names, and the script refers to
# preseed.cfg: copy both under fixed names.
embed=$(mktemp -d)
trap 'rm -rf "$embed"' EXIT
cp "$script" "$embed/embed.ipxe"
cp "$preseed" "$embed/preseed.cfg"

# GCC 12 and newer fail the 2019 sources without these: -Werror on new warnings, and
# "multiple definition of _shared_bss" without -fcommon.
make -C "$source_dir/src" -j"$(nproc)" NO_WERROR=1 EXTRA_CFLAGS=-fcommon \
    EMBED="$embed/embed.ipxe,$embed/preseed.cfg" bin/ipxe.usb
cp "$source_dir/src/bin/ipxe.usb" "$out"
