#!/usr/bin/env bash
# Installs the Debian packages fenlei's development and tests need, those missing only.
# Silent when all are there. Installing needs root (CI runs as root); otherwise it names
# the command to run and fails.
#
#   golang-grpc-gateway  protoc-gen-swagger (1.6), which scripts/gen.py runs for
#                        services/fenlei/v1/fenlei.swagger.json (the drift test regenerates it)
#   prometheus           /usr/bin/prometheus, which `fenlei up --prometheus` runs (and its test)
#   buildah podman       build the image of mesh/Dockerfile (scripts/image.sh), push and pull it
#   debootstrap          the image's Debian base where no registry serves python:3.11-slim
#   docker-registry      a registry v2 on loopback that the image tests push to and pull from
#   chromium             the browser the console's tests drive (Playwright, headless)
#   fonts-noto-cjk       Chinese glyphs in the console's screenshots
set -euo pipefail

packages=(
  golang-grpc-gateway
  prometheus
  buildah
  podman
  debootstrap
  docker-registry
  chromium
  fonts-noto-cjk
)

missing=()
for package in "${packages[@]}"; do
  status=$(dpkg-query --show --showformat='${db:Status-Status}' "$package" 2>/dev/null || true)
  [ "$status" = installed ] || missing+=("$package")
done
[ ${#missing[@]} -eq 0 ] && exit 0

command="apt-get update && apt-get install --yes --no-install-recommends ${missing[*]}"
as_root=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    as_root=(sudo -n)  # passwordless sudo: install without asking
  else
    echo "fenlei needs these Debian packages: ${missing[*]}" >&2
    echo "install them as root: sudo sh -c '$command'" >&2
    exit 1
  fi
fi
echo "installing Debian packages: ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
"${as_root[@]}" apt-get update --quiet --quiet >/dev/null
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install --quiet --quiet --yes --no-install-recommends "${missing[@]}" >/dev/null
