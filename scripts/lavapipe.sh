#!/usr/bin/env bash
# Install a Vulkan loader and Mesa's lavapipe (wgpu's CPU Vulkan driver), Mesa 25 or
# newer: on Tessera's path tracer it is about 8x faster than Debian 12's Mesa 22.3 (another
# determinism class, byte-identical in 41 of 44 calibration tiles: docs/CALIBRATION.md). A release that ships Mesa >= 25 gets it from
# its own suite; Debian 12 (bookworm) gets it from its backports suite, added with the
# mirror and keyring the machine's own apt sources already use (no mirror is written in
# here). Idempotent: does nothing when a new enough lavapipe is installed.
#
# Usage: bash scripts/lavapipe.sh   (as root, on Debian)
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
want=25

# The installed mesa-vulkan-drivers' major version (0 when missing).
installed() {
  local v
  v=$(dpkg-query -W -f='${Status} ${Version}' mesa-vulkan-drivers 2>/dev/null || true)
  case "$v" in
    "install ok installed "*) v=${v##* }; v=${v#*:}; echo "${v%%.*}" ;;
    *) echo 0 ;;
  esac
}

if dpkg -s libvulkan1 >/dev/null 2>&1 && [ "$(installed)" -ge "$want" ]; then
  exit 0
fi
apt-get update -qq
apt-get install -y -qq libvulkan1 mesa-vulkan-drivers
if [ "$(installed)" -ge "$want" ]; then
  exit 0
fi

. /etc/os-release
codename=${VERSION_CODENAME:?/etc/os-release names no release codename}
suite="$codename-backports"
# The first mirror the machine's sources use for its release: one-line sources
# (`deb URI SUITE COMPONENTS`) or deb822 stanzas (`URIs:` and `Suites:` fields).
mirror=$(
  {
    { cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null || true; } \
      | awk -v c="$codename" '$1 == "deb" { i = 2; if ($2 ~ /^\[/) { while ($i !~ /\]$/) i++; i++ } if ($(i+1) == c) { print $i; exit } }'
    { cat /etc/apt/sources.list.d/*.sources 2>/dev/null || true; } \
      | awk -v c="$codename" 'BEGIN { RS = "" } {
          uris = ""; suites = ""; n = split($0, line, "\n")
          for (i = 1; i <= n; i++) {
            if (line[i] ~ /^URIs:/) { sub(/^URIs:[ \t]*/, "", line[i]); uris = line[i] }
            if (line[i] ~ /^Suites:/) { sub(/^Suites:[ \t]*/, "", line[i]); suites = " " line[i] " " }
          }
          if (uris != "" && index(suites, " " c " ")) { split(uris, u, " "); print u[1]; exit }
        }'
  } | head -n 1
)
if [ -z "$mirror" ]; then
  echo "lavapipe: no apt source for $codename found in /etc/apt; add $suite by hand, then run this again" >&2
  exit 1
fi
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
{
  echo "Types: deb"
  echo "URIs: $mirror"
  echo "Suites: $suite"
  echo "Components: main"
  if [ -f "$keyring" ]; then echo "Signed-By: $keyring"; fi
} > /etc/apt/sources.list.d/tessera-backports.sources
echo "lavapipe: Mesa $(installed) is older than $want; installing it from $suite ($mirror)"
apt-get update -qq
apt-get install -y -qq -t "$suite" mesa-vulkan-drivers
if [ "$(installed)" -lt "$want" ]; then
  echo "lavapipe: $suite has no Mesa $want or newer" >&2
  exit 1
fi
