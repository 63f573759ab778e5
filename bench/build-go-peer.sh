#!/usr/bin/env bash
# Builds the Go controller-runtime peer (bench/go-peer) once per machine, into a
# cache folder named by the hash of its sources, like the control plane's
# binaries. Prints the binary's path on its last line.
set -euo pipefail
dir="$(cd "$(dirname "$0")/go-peer" && pwd)"
cache="${NIGHTSHIFT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/nightshift}"
command -v go >/dev/null || { echo "build-go-peer: Go >= 1.26 is required (or BENCH_GO_PEER=0)" >&2; exit 1; }
key="$(cat "$dir/go.sum" "$dir/go.mod" "$dir"/*.go "$dir"/bgt/*.go | sha256sum | cut -c1-16)"
out="$cache/go-peer-$key"
if [ ! -f "$out/.complete" ]; then
  echo "build-go-peer: building into $out (first time on this machine; minutes)" >&2
  rm -rf "$out"; mkdir -p "$out"
  (cd "$dir" && CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -ldflags "-s -w" -o "$out/go-peer" .)
  touch "$out/.complete"
fi
echo "$out/go-peer"
