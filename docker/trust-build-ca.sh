#!/bin/sh
# Sourced by the build stages of docker/Dockerfile before anything is downloaded (pip, uv): behind a TLS-inspecting
# proxy, the proxy's CA must be trusted. EXTRA_CA_CERTS (PEM text; BUILD_CA_BUNDLE in .env) is added to the base
# image's trust store, and pip is pointed at that store (uv reads it through UV_NATIVE_TLS, set in the Dockerfile).
# The final image never runs this: its trust store is the base image's.
if [ -n "${EXTRA_CA_CERTS:-}" ]; then
  mkdir -p /usr/local/share/ca-certificates
  printf '%s\n' "$EXTRA_CA_CERTS" >/usr/local/share/ca-certificates/gs-ds-env-build-extra.crt
  if command -v update-ca-certificates >/dev/null 2>&1; then
    update-ca-certificates >/dev/null 2>&1
  else
    mkdir -p /etc/ssl/certs
    printf '%s\n' "$EXTRA_CA_CERTS" >>/etc/ssl/certs/ca-certificates.crt
  fi
fi
if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
  export PIP_CERT=/etc/ssl/certs/ca-certificates.crt SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
fi
