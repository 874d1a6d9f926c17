#!/usr/bin/env bash
# The guest the QEMU tests boot: Debian's current cloud kernel and an initramfs
# of busybox-static, the virtio-mem driver's modules and the guest workload.
#
#   packaging/guest-image.sh OUTDIR GUEST_PROGRAM INIT_SCRIPT
#
# Makes OUTDIR/vmlinuz and OUTDIR/initramfs.cpio.gz. The build runs it every
# time (tests/guest/CMakeLists.txt), so it does nothing when both are up to
# date but ask apt which kernel is current. The kernel package comes from
# Debian's mirror with `apt-get download` and is unpacked with `dpkg-deb -x`,
# never installed. When something cannot be had (no apt, no mirror, no static
# busybox) it writes why to OUTDIR/unavailable and exits 0: the build goes on
# and the tests that boot a guest skip with that reason.
set -euo pipefail

[[ $# -eq 3 ]] || { echo "usage: $0 OUTDIR GUEST_PROGRAM INIT_SCRIPT" >&2; exit 2; }
out=$1 program=$2 init=$3
mkdir -p "$out"
unavailable() {
  echo "$*" > "$out/unavailable"
  echo "guest image: $*" >&2
  exit 0
}

# The modules virtio-mem and virtio-balloon (the guest's statistics, which the
# qemu platform reads) need, in the order busybox insmod must load them.
modules=(virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci virtio_mem virtio_balloon)

[[ $(dpkg --print-architecture 2>/dev/null) == amd64 ]] || unavailable "the guest kernel is Debian's amd64 cloud kernel; this is not a Debian amd64 machine"

# The kernel: the package the metapackage depends on now, e.g.
# linux-image-6.1.0-57-cloud-amd64. Each lives in kernel/<package>/, complete
# once it holds `done`. apt is asked at most once a day (it takes seconds where
# its cache is switched off, as in Debian's container images); an apt that
# cannot answer falls back on the kernel fetched last.
kernels=$out/kernel
last=$(ls -t "$kernels"/*/done 2>/dev/null | head -n 1 | xargs -r dirname | xargs -r basename) || true
package=
if [[ -n $last && -n $(find "$kernels/$last/done" -mmin -1440) ]]; then
  package=$last
else
  package=$(apt-cache -o Dir::Cache::pkgcache="$out/apt-pkgcache.bin" -o Dir::Cache::srcpkgcache= \
              depends linux-image-cloud-amd64 2>/dev/null |
            sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*\)$/\1/p' | head -n 1) || true
  [[ -n $package ]] || package=$last
  [[ -n $package ]] || unavailable "apt-cache knows no linux-image-cloud-amd64 (apt-get update?) and no kernel was fetched before"
  [[ $package != "$last" ]] || touch "$kernels/$last/done"
fi
dir=$kernels/$package
if [[ ! -f $dir/done ]]; then
  rm -rf "$dir" && mkdir -p "$dir"
  # As root, apt would hand the download to its _apt user, who may not write
  # into a build tree; the fetch happens as whoever runs the build.
  # A mirror out of reach must not hold every build for apt's retries.
  if ! (cd "$dir" && apt-get download -q -o APT::Sandbox::User="$(id -un)" -o Acquire::Retries=0 \
          -o Acquire::http::Timeout=15 "$package" >"$dir/download.log" 2>&1); then
    why="apt-get download $package failed: $(tail -n 1 "$dir/download.log")"
    rm -rf "$dir"
    [[ -n $last ]] || unavailable "$why"
    # A mirror out of reach is no reason to lose the kernel fetched before;
    # apt is asked again in a day.
    echo "guest image: $why; keeping $last" >&2
    package=$last dir=$kernels/$last
    touch "$dir/done"
  fi
fi
if [[ ! -f $dir/done ]]; then
  dpkg-deb -x "$dir"/*.deb "$dir/root" || unavailable "dpkg-deb -x of $package failed"
  rm -f "$dir"/*.deb
  touch "$dir/done"
  # The kernels of earlier builds: a build tree keeps only the current one.
  find "$kernels" -mindepth 1 -maxdepth 1 -type d ! -name "$package" -exec rm -rf {} +
fi
vmlinuz=$(ls "$dir"/root/boot/vmlinuz-* 2>/dev/null | head -n 1)
[[ -n $vmlinuz ]] || unavailable "$package holds no /boot/vmlinuz-*"
ln -sfn "$vmlinuz" "$out/vmlinuz"

# The initramfs, made again only when one of its parts is newer.
busybox=$(command -v busybox || true)
[[ -n $busybox ]] || unavailable "no busybox (the busybox-static package)"
if LC_ALL=C readelf -l "$busybox" 2>/dev/null | grep -q 'program interpreter'; then
  unavailable "$busybox is linked dynamically; the initramfs needs busybox-static"
fi
initramfs=$out/initramfs.cpio.gz
fresh=1
for part in "$program" "$init" "$busybox" "$dir/done" "${BASH_SOURCE[0]}"; do
  [[ -f $initramfs && ! $part -nt $initramfs ]] || fresh=0
done
if [[ $fresh -eq 0 ]]; then
  stage=$out/initramfs.d
  rm -rf "$stage" && mkdir -p "$stage/bin" "$stage/lib/modules"
  cp "$busybox" "$stage/bin/busybox"
  cp "$init" "$stage/init"
  cp "$program" "$stage/memlend-guest"
  chmod 0755 "$stage/init" "$stage/memlend-guest"
  for m in "${modules[@]}"; do
    ko=$(find "$dir/root/lib/modules" -name "$m.ko" -o -name "$m.ko.xz" -o -name "$m.ko.zst" | head -n 1)
    [[ -n $ko ]] || unavailable "$package has no module $m"
    # busybox insmod takes only uncompressed modules.
    case $ko in
      *.xz) xz -dc "$ko" > "$stage/lib/modules/$m.ko" ;;
      *.zst) zstd -qdc "$ko" > "$stage/lib/modules/$m.ko" ;;
      *) cp "$ko" "$stage/lib/modules/$m.ko" ;;
    esac
  done
  (cd "$stage" && find . | LC_ALL=C sort | "$busybox" cpio -o -H newc -R 0:0 2>/dev/null) | gzip -1 > "$initramfs.tmp"
  mv "$initramfs.tmp" "$initramfs"
  rm -rf "$stage"
fi
rm -f "$out/unavailable"
