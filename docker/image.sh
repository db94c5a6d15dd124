#!/usr/bin/env bash
# The shell steps of memif-go's Docker image, in one place so that .ci/run
# runs the same steps on a developer machine or CI where it can.
#
#   image.sh check-libmemif PREFIX [NAME]      PREFIX holds libmemif 4.0 (include/libmemif.h, lib/libmemif.so*)
#   image.sh install-libmemif SRC DEST [NAME]  check SRC, copy its header and library into DEST/include, DEST/lib
#                                              (NAME: what to call SRC in the message, e.g. the build context)
#   image.sh debian-packages            the Debian packages the build and the interop tests need
#   image.sh vpp-packages VERSION       FD.io's VPP packages the tests need, each pinned to VERSION
#   image.sh install-packages           apt: the Debian packages, then VPP from FD.io's repository
#   image.sh preflight                  check that every peer the tests use is installed
#   image.sh test [go test flags]       preflight, then ./build.sh test (the image's command)
#
# libmemif is never built here: it is the user's installed library (see README).
set -euo pipefail

die() {
  echo "$*" >&2
  exit 1
}

# One line, the same in the image and in CI, when libmemif is missing.
check_libmemif() {
  local p="$1" name="${2:-$1}"
  local why=""
  if [ ! -f "$p/include/libmemif.h" ]; then
    why="no include/libmemif.h"
  elif ! compgen -G "$p/lib/libmemif.so*" >/dev/null; then
    why="no lib/libmemif.so*"
  elif ! grep -q '^#define LIBMEMIF_VERSION "4.0"' "$p/include/libmemif.h"; then
    why="include/libmemif.h is not libmemif 4.0"
  fi
  [ -z "$why" ] ||
    die "libmemif 4.0 not found in $name ($why): build and install FD.io VPP extras/libmemif v26.06 as README says (for Docker, pass its prefix: docker build --build-context libmemif=<prefix> .)"
}

# The packages every machine that runs the tests needs: a C compiler for cgo,
# DPDK testpmd with its memif PMD (Debian 12 ships DPDK 22.11, ABI 23) and
# tshark, which reads back the capture example's pcap files.
debian_packages() {
  echo gcc libc6-dev dpdk-dev librte-net-memif23 tshark
}

# vpp depends on libvppinfra (= its version) and the plugins on vpp (= their
# version) (VPP's src/pkg/debian/control.in): all three are pinned together,
# or apt picks a newer libvppinfra as soon as FD.io publishes one.
# vpp-plugin-core holds the memif and ping plugins the tests load.
vpp_packages() {
  local v="$1"
  echo "vpp=$v libvppinfra=$v vpp-plugin-core=$v"
}

install_packages() {
  : "${VPP_VERSION:?set VPP_VERSION, e.g. 26.06-release}"
  : "${VPP_REPO:?set VPP_REPO, the FD.io packagecloud repository, e.g. release}"
  local dist
  # shellcheck source=/dev/null
  dist="$(. /etc/os-release && echo "$VERSION_CODENAME")"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update
  # shellcheck disable=SC2046 # one word per package
  apt-get install -y --no-install-recommends ca-certificates curl gnupg $(debian_packages)
  # FD.io's repository with its key in a keyring that only this source
  # trusts (signed-by), no setup script.
  install -d -m 0755 /etc/apt/keyrings
  curl -fsSL "https://packagecloud.io/fdio/$VPP_REPO/gpgkey" |
    gpg --dearmor -o /etc/apt/keyrings/fdio.gpg
  echo "deb [signed-by=/etc/apt/keyrings/fdio.gpg] https://packagecloud.io/fdio/$VPP_REPO/debian/ $dist main" \
    >/etc/apt/sources.list.d/fdio.list
  # Every VPP package apt might pull in is held at VPP_VERSION too.
  printf 'Package: vpp* libvppinfra* python3-vpp-api\nPin: version %s\nPin-Priority: 1001\n' "$VPP_VERSION" \
    >/etc/apt/preferences.d/fdio-vpp
  apt-get update
  # vpp's postinst runs sysctl --system for hugepages, which a container
  # cannot set; VPP's own knob skips it (the tests use 4 KiB pages).
  # shellcheck disable=SC2046
  VPP_INSTALL_SKIP_SYSCTL=1 apt-get install -y --no-install-recommends $(vpp_packages "$VPP_VERSION")
  apt-get purge -y --auto-remove curl gnupg
  rm -rf /var/lib/apt/lists/*
}

install_libmemif() {
  local src="$1" dest="$2"
  check_libmemif "$src" "${3:-$src}"
  install -d "$dest/include" "$dest/lib"
  cp -a "$src/include/libmemif.h" "$dest/include/"
  if [ -f "$src/include/memif.h" ]; then cp -a "$src/include/memif.h" "$dest/include/"; fi
  cp -a "$src"/lib/libmemif.so* "$dest/lib/"
  # Refresh the loader cache when installing system-wide (the image).
  if [ "$(id -u)" = 0 ] && [ "$dest" = /usr/local ]; then ldconfig; fi
  echo "libmemif 4.0 installed in $dest"
}

# REQUIRE_VPP=1 (the image) makes a missing VPP an error; elsewhere the VPP
# tests skip with one line, as README says.
preflight() {
  local missing=()
  command -v gcc >/dev/null || missing+=("gcc")
  command -v dpdk-testpmd >/dev/null || missing+=("dpdk-testpmd (dpdk-dev)")
  compgen -G "/usr/lib/*/dpdk/pmds-*/librte_net_memif.so" >/dev/null || missing+=("DPDK memif PMD (librte-net-memif23)")
  command -v tshark >/dev/null || missing+=("tshark")
  if command -v vpp >/dev/null; then
    local plugins="${MEMIF_VPP_PLUGIN_PATH:-/usr/lib/*/vpp_plugins}"
    for p in memif_plugin.so ping_plugin.so; do
      compgen -G "$plugins/$p" >/dev/null || missing+=("VPP $p in $plugins (vpp-plugin-core)")
    done
    command -v vppctl >/dev/null || missing+=("vppctl")
  elif [ "${REQUIRE_VPP:-0}" = 1 ]; then
    missing+=("vpp")
  else
    echo "preflight: no vpp on PATH: the VPP interop tests will skip"
  fi
  [ ${#missing[@]} -eq 0 ] || die "preflight: missing: ${missing[*]}"
  echo "preflight: ok"
}

cmd="${1:-}"
[ $# -gt 0 ] && shift
case "$cmd" in
  check-libmemif) check_libmemif "${1:?prefix}" "${2:-}" ;;
  install-libmemif) install_libmemif "${1:?source prefix}" "${2:?destination prefix}" "${3:-}" ;;
  debian-packages) debian_packages ;;
  vpp-packages) vpp_packages "${1:?version}" ;;
  install-packages) install_packages ;;
  preflight) preflight ;;
  test)
    preflight
    cd "$(dirname "$0")/.."
    ./build.sh test "$@"
    ;;
  *) die "usage: image.sh check-libmemif|install-libmemif|debian-packages|vpp-packages|install-packages|preflight|test" ;;
esac
