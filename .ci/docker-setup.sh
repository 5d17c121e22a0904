#!/usr/bin/env bash
# Make Docker usable on a bare Debian CI machine that cannot pull from any registry:
#   1. install the engine, docker-compose (v1, for SageMaker local mode) and a registry from Debian;
#   2. start dockerd if it is not answering;
#   3. build an offline Python base image (debootstrap -> docker import -> apt python3) to pass as BASE_IMAGE.
# Idempotent: every step checks before it acts. Prints the base image name on its last line.
set -Eeuo pipefail

BASE_IMAGE_NAME="${BASE_IMAGE_NAME:-gs-ds-env/python-base:3.11-bookworm}"
DEBIAN_SUITE="${DEBIAN_SUITE:-bookworm}"
DEBIAN_MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"

log() { printf '[docker-setup] %s\n' "$*" >&2; }

need_pkgs=()
for pkg_cmd in docker.io:dockerd docker-compose:docker-compose docker-registry:docker-registry debootstrap:debootstrap; do
  command -v "${pkg_cmd#*:}" >/dev/null 2>&1 || need_pkgs+=("${pkg_cmd%%:*}")
done
if ((${#need_pkgs[@]})); then
  log "installing ${need_pkgs[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
fi

if ! docker info >/dev/null 2>&1; then
  log "starting dockerd (log: /var/log/dockerd.log)"
  nohup dockerd >/var/log/dockerd.log 2>&1 &
  for _ in $(seq 60); do
    docker info >/dev/null 2>&1 && break
    sleep 1
  done
  docker info >/dev/null 2>&1 || { log "dockerd did not start; see /var/log/dockerd.log"; exit 1; }
fi

if ! docker image inspect "$BASE_IMAGE_NAME" >/dev/null 2>&1; then
  rootfs_tag="gs-ds-env/debian-rootfs:${DEBIAN_SUITE}"
  if ! docker image inspect "$rootfs_tag" >/dev/null 2>&1; then
    rootfs="$(mktemp -d)"
    trap 'rm -rf "$rootfs"' EXIT
    log "debootstrap ${DEBIAN_SUITE} (minbase) into $rootfs"
    debootstrap --variant=minbase "$DEBIAN_SUITE" "$rootfs" "$DEBIAN_MIRROR" >/dev/null
    # This network re-signs TLS: the host's CA bundle (and any local CAs) must be trusted inside too.
    mkdir -p "$rootfs/etc/ssl/certs" "$rootfs/usr/local/share/ca-certificates"
    cp /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
    find /usr/local/share/ca-certificates -maxdepth 1 -name '*.crt' -exec cp {} "$rootfs/usr/local/share/ca-certificates/" \;
    tar -C "$rootfs" -c . | docker import - "$rootfs_tag" >/dev/null
  fi
  log "building $BASE_IMAGE_NAME from $rootfs_tag"
  docker build -q -t "$BASE_IMAGE_NAME" --build-arg "ROOTFS=$rootfs_tag" - >/dev/null <<'DOCKERFILE'
ARG ROOTFS
FROM ${ROOTFS}
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
 && update-ca-certificates \
 && rm -rf /var/lib/apt/lists/*
ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt
CMD ["python3"]
DOCKERFILE
fi
log "base image ready"
echo "$BASE_IMAGE_NAME"
