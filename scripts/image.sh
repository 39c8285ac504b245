#!/usr/bin/env bash
# Builds fenlei's image from mesh/Dockerfile with buildah, reports its size, pushes it to a
# registry when asked, and writes the kustomize `images:` entry that names it in every
# overlay (mesh/k8s/components/image/kustomization.yaml).
#
#   bash scripts/image.sh [--base IMAGE | --debootstrap] [--tag TAG] [--push REPOSITORY] [--tls-verify false]
#                         [--kustomization DIR] [--no-cache]
#
#   --base IMAGE        the base of both stages (default python:3.11-slim, the official image)
#   --debootstrap       a Debian bookworm base made by debootstrap from apt's own sources, with Debian's
#                       Python 3.11, for machines that no image registry serves; kept in the image store as
#                       localhost/fenlei-base:bookworm and reused by later builds (remove it to rebuild it)
#   --tag TAG           default: the version in pyproject.toml
#   --push REPOSITORY   e.g. registry.example.com/team/fenlei: push TAG there; the entry then names the
#                       image by the digest the registry holds (a cluster pulls exactly that)
#   --tls-verify false  for a registry on plain HTTP (a loopback one)
#   --kustomization DIR where the images: entry goes (default mesh/k8s/components/image)
#
# The build reaches the same package indexes as this machine's pip: pip's configuration
# (`pip config list`, files and PIP_* variables alike) becomes /etc/pip.conf in the build,
# and the local files it names (find-links, file: indexes, certificates, constraints) are
# mounted read-only at the same paths. debootstrap takes its mirror and keyring from apt's
# sources. Nothing of either is written into the image's layers.
#
# Needs root (buildah's chroot isolation, debootstrap) and Debian's buildah and debootstrap
# (scripts/debian-packages.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

base=python:3.11-slim
debootstrap=false
tag=$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
push=""
tls_verify=true
kustomization=mesh/k8s/components/image
cache=()
while [ $# -gt 0 ]; do
  case "$1" in
    --base) base=$2; shift 2 ;;
    --debootstrap) debootstrap=true; shift ;;
    --tag) tag=$2; shift 2 ;;
    --push) push=$2; shift 2 ;;
    --tls-verify) tls_verify=$2; shift 2 ;;
    --kustomization) kustomization=$2; shift 2 ;;
    --no-cache) cache=(--no-cache); shift ;;
    *) echo "unknown option $1 (see the head of $0)" >&2; exit 2 ;;
  esac
done
python=python3
[ -x .venv/bin/python ] && python=.venv/bin/python
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

milliseconds() { echo $(($(date +%s%N) / 1000000)); }
elapsed() { local ms=$(($(milliseconds) - $1)); printf '%d.%d s' $((ms / 1000)) $((ms % 1000 / 100)); }

# The first suite of apt's sources that carries bookworm, as "URI KEYRING".
apt_mirror() {
  local uri suites keyring
  for sources in /etc/apt/sources.list.d/*.sources; do
    [ -e "$sources" ] || continue
    uri=$(sed -n 's/^URIs: *\([^ ]*\).*/\1/p' "$sources" | head -1)
    suites=$(sed -n 's/^Suites: *//p' "$sources" | head -1)
    keyring=$(sed -n 's/^Signed-By: *//p' "$sources" | head -1)
    if [[ " $suites " == *" bookworm "* ]]; then
      echo "$uri ${keyring:-/usr/share/keyrings/debian-archive-keyring.gpg}"
      return
    fi
  done
  uri=$(sed -n 's/^deb \(\[[^]]*\] \)\?\([^ ]*\) bookworm .*/\2/p' /etc/apt/sources.list 2>/dev/null | head -1)
  [ -n "$uri" ] || { echo "no bookworm suite in apt's sources" >&2; exit 1; }
  echo "$uri /usr/share/keyrings/debian-archive-keyring.gpg"
}

debootstrap_base() {
  local image=localhost/fenlei-base:bookworm
  if podman image exists "$image"; then
    echo "base $image (cached)" >&2
    echo "$image"
    return
  fi
  local started mirror keyring root
  started=$(milliseconds)
  read -r mirror keyring < <(apt_mirror)
  root=$scratch/rootfs
  # minbase: apt, dpkg, coreutils, passwd and the like; Debian's Python 3.11 and its venv
  debootstrap --variant=minbase --keyring="$keyring" --include=python3,python3-venv,ca-certificates \
    bookworm "$root" "$mirror" >"$scratch/debootstrap.log" 2>&1 || { tail -20 "$scratch/debootstrap.log" >&2; exit 1; }
  # no package caches, no mirror named in the image, none of this machine's names (a runtime provides them)
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/etc/apt/sources.list "$root"/var/log/* \
    "$root"/etc/hostname "$root"/etc/resolv.conf
  tar --numeric-owner -C "$root" -c . | podman import --quiet - "$image" >/dev/null
  rm -rf "$root"
  echo "base $image made by debootstrap in $(elapsed "$started")" >&2
  echo "$image"
}

# pip's effective configuration as /etc/pip.conf for the build, and the --volume options
# for the local paths it names.
pip_build_options() {
  "$python" -m pip config list | "$python" -c '
import configparser, os, sys
from urllib.parse import unquote, urlsplit

config = configparser.ConfigParser(interpolation=None)
paths = set()
for line in sys.stdin:
    key, _, value = line.rstrip("\n").partition("=")
    section, _, name = key.rpartition(".")
    section = "global" if section in (":env:", "") else section
    value = value.strip("\x27\"")
    config.setdefault(section, {})
    config[section][name] = value
    for word in value.split():
        local = unquote(urlsplit(word).path) if word.startswith("file:") else word
        if not os.path.isabs(local) or not os.path.exists(local):
            continue
        # a file: index links to its files relatively (../../files/...): mount the folder it sits in
        paths.add(os.path.dirname(local.rstrip("/")) if name.endswith("index-url") else local)
with open(sys.argv[1], "w") as out:
    config.write(out)
print(f"--volume={sys.argv[1]}:/etc/pip.conf:ro")
for path in sorted(paths):
    if not any(path.startswith(other + "/") for other in paths):
        print(f"--volume={path}:{path}:ro")
' "$scratch/pip.conf"
}

[ "$debootstrap" = true ] && base=$(debootstrap_base)
version=$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)
git diff --quiet HEAD -- services pyproject.toml mesh/Dockerfile 2>/dev/null || revision="$revision-dirty"
source=$(git remote get-url origin 2>/dev/null || echo "")
mapfile -t volumes < <(pip_build_options)
image=localhost/fenlei:$tag

started=$(milliseconds)
buildah bud --isolation chroot --layers "${cache[@]}" \
  --file mesh/Dockerfile --ignorefile mesh/Dockerfile.dockerignore \
  --build-arg "BASE=$base" --build-arg "VERSION=$version" --build-arg "REVISION=$revision" --build-arg "SOURCE=$source" \
  "${volumes[@]}" --tag "$image" . >"$scratch/build.log" 2>&1 || { tail -40 "$scratch/build.log" >&2; exit 1; }
id=$(podman image inspect --format '{{.Id}}' "$image")
size=$(podman image inspect --format '{{.Size}}' "$image")
echo "built $image (image id ${id:0:12}) from $base in $(elapsed "$started"): $((size / 1000000)) MB"

reference=fenlei:$tag
if [ -n "$push" ]; then
  started=$(milliseconds)
  podman push --quiet --tls-verify="$tls_verify" --digestfile "$scratch/digest" "$image" "docker://$push:$tag"
  digest=$(cat "$scratch/digest")
  reference=$push:$tag@$digest
  echo "pushed $reference in $(elapsed "$started")"
fi

mkdir -p "$kustomization"
{
  echo "# Written by scripts/image.sh: the image its last build produced, for every container of every overlay."
  echo "apiVersion: kustomize.config.k8s.io/v1alpha1"
  echo "kind: Component"
  echo "images:"
  echo "  - name: fenlei"
  echo "    newName: ${push:-fenlei}"
  echo "    newTag: \"$tag\""
  [ -n "$push" ] && echo "    digest: $digest"
} >"$kustomization/kustomization.yaml"
echo "wrote $kustomization/kustomization.yaml: $reference"
