#!/bin/bash
# Everything the tests and the demo need on a fresh Debian 12 with Node 20, as root:
# Debian packages (installed only when missing), npm ci (only when needed), build.
set -euo pipefail
cd "$(dirname "$0")/.."

# command → Debian package that provides it
declare -A NEED=(
  [docker-registry]=docker-registry
  [containerd]=containerd
  [ctr]=containerd
  [runc]=runc
  [crun]=crun
  [busybox]=busybox-static
  [skopeo]=skopeo
  [apparmor_parser]=apparmor
  [openssl]=openssl
  [htpasswd]=apache2-utils
  [mount]=mount
  [bpftrace]=bpftrace
)
missing=()
for cmd in "${!NEED[@]}"; do
  if ! command -v "$cmd" >/dev/null 2>&1 && [ ! -x "/usr/sbin/$cmd" ] && [ ! -x "/sbin/$cmd" ]; then
    missing+=("${NEED[$cmd]}")
  fi
done
# busybox must be the static build (it becomes a container's whole rootfs)
if ! dpkg -s busybox-static >/dev/null 2>&1; then missing+=(busybox-static); fi
if [ ${#missing[@]} -gt 0 ]; then
  pkgs=$(printf '%s\n' "${missing[@]}" | sort -u | tr '\n' ' ')
  echo "setup: installing Debian packages: $pkgs"
  if [ "$(id -u)" -ne 0 ]; then echo "setup: must run as root to install packages" >&2; exit 1; fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # shellcheck disable=SC2086
  apt-get install -y -qq --no-install-recommends $pkgs >/dev/null
  # the Debian units would start system-wide daemons on default ports; tests start their own
  systemctl disable --now containerd docker-registry >/dev/null 2>&1 || true
fi
export PATH="$PATH:/usr/sbin:/sbin"

# npm ci when node_modules is missing or older than the lock file
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "setup: npm ci"
  npm ci --no-audit --no-fund --loglevel=error
fi

echo "setup: build"
rm -rf dist
npm run --silent build
