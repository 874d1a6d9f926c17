#!/bin/sh
# make-dbgsym.sh BINARY VERSION MAINTAINER OUTDIR
#
# Splits BINARY's debug info off as Debian's dh_strip does: into
# OUTDIR/memlend-dbgsym_VERSION_ARCH.deb, at /usr/lib/debug/.build-id/xx/
# yyyy.debug where gdb, eu-stack and systemd-coredump look for it by the
# binary's build-id; BINARY itself is stripped in place and names that file
# in its .gnu_debuglink. Run by CPack on the binary it is about to package
# (dbgsym.cmake), so the two always come from the same build.
set -eu
umask 022

bin=$1
version=$2
maintainer=$3
out=$4

id=$(LC_ALL=C readelf -n "$bin" | sed -n 's/^ *Build ID: \([0-9a-f]*\)$/\1/p')
if [ -z "$id" ]; then
  echo "make-dbgsym.sh: $bin has no build-id to file its debug info under" >&2
  exit 1
fi
arch=$(dpkg --print-architecture)
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
chmod 0755 "$root"
debug=usr/lib/debug/.build-id/$(echo "$id" | cut -c1-2)/$(echo "$id" | cut -c3-).debug
mkdir -p "$root/$(dirname "$debug")"
objcopy --only-keep-debug --compress-debug-sections "$bin" "$root/$debug"
chmod 0644 "$root/$debug"
strip --remove-section=.comment --remove-section=.note "$bin"
objcopy --add-gnu-debuglink="$root/$debug" "$bin"

# Its documentation is memlend's, as debhelper's dbgsym packages have it.
mkdir -p "$root/usr/share/doc" "$root/DEBIAN"
ln -s memlend "$root/usr/share/doc/memlend-dbgsym"
(cd "$root" && md5sum "$debug") > "$root/DEBIAN/md5sums"
cat > "$root/DEBIAN/control" <<CONTROL
Package: memlend-dbgsym
Source: memlend
Version: $version
Auto-Built-Package: debug-symbols
Architecture: $arch
Maintainer: $maintainer
Installed-Size: $(du -k -s --exclude=DEBIAN "$root" | cut -f1)
Depends: memlend (= $version)
Section: debug
Priority: optional
Description: debug symbols for memlend
Build-Ids: $id
CONTROL
dpkg-deb --root-owner-group --build "$root" "$out/memlend-dbgsym_${version}_${arch}.deb" >/dev/null
