#!/usr/bin/env bash
# Builds the local control plane's binaries from the Go modules beside this
# script, once per machine: each tool family lands in a cache folder named by
# the hash of its go.sum, so a rebuild happens only when its versions change.
# Prints the folder holding all binaries (one symlink each) on its last line.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cache="${NIGHTSHIFT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/nightshift}"
bin="$cache/bin"
mkdir -p "$bin"

command -v go >/dev/null || { echo "build-binaries: Go >= 1.25 is required to build the local control plane (or use kind with kind-config.yaml)" >&2; exit 1; }

k8s_version=v1.35.4
build_family() { # family package...
  local family="$1"; shift
  local dir="$here/go/$family"
  # Contents only, not paths: every checkout of the same versions shares one build.
  # Patch files (*.sed) count too; families without them keep their key.
  local key; key="$(cd "$dir" && cat go.sum go.mod $(find . -name '*.go' | LC_ALL=C sort) $(find . -maxdepth 1 -name '*.sed' | LC_ALL=C sort) | sha256sum | cut -c1-16)"
  local out="$cache/$family-$key"
  if [ ! -f "$out/.complete" ]; then
    echo "build-binaries: building $family into $out (first time on this machine; minutes)" >&2
    rm -rf "$out"; mkdir -p "$out"
    local ldflags="-s -w" tags="selinux,notest"
    if [ "$family" = containerd ]; then
      local cv; cv="$(cd "$dir" && go list -m -f '{{.Version}}' github.com/containerd/containerd/v2)"
      ldflags="$ldflags -X github.com/containerd/containerd/v2/version.Version=$cv -X github.com/containerd/containerd/v2/version.Package=github.com/containerd/containerd/v2"
      tags="no_btrfs,no_devmapper,no_zfs,no_aufs"
    fi
    if [ "$family" = kubernetes ]; then
      local v=k8s.io/component-base/version cv=k8s.io/client-go/pkg/version
      local stamp="-X $v.gitVersion=$k8s_version -X $v.gitMajor=1 -X $v.gitMinor=35 -X $v.gitTreeState=clean -X $v.buildDate=1970-01-01T00:00:00Z"
      stamp="$stamp -X $cv.gitVersion=$k8s_version -X $cv.gitMajor=1 -X $cv.gitMinor=35 -X $cv.gitTreeState=clean"
      ldflags="$ldflags $stamp"
    elif [ "$family" = helm ]; then
      # As helm's Makefile does: its version, and the Kubernetes version of its client-go
      # (the default for `helm template`/`helm lint`, checked against Chart.yaml's kubeVersion).
      local hv kv
      hv="$(grep -oE 'helm.sh/helm/v3 v[0-9.]+' "$dir/go.mod" | cut -d' ' -f2)"
      kv="$(grep -oE 'k8s.io/client-go v[0-9.]+' "$dir/go.mod" | cut -d. -f3)"
      ldflags="$ldflags -X helm.sh/helm/v3/internal/version.version=$hv -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
      ldflags="$ldflags -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$kv"
      ldflags="$ldflags -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$kv"
    fi
    local src="$dir"
    if declare -F "prepare_$family" >/dev/null; then src="$("prepare_$family" "$dir" "$out")"; fi
    (cd "$src" && CGO_ENABLED=0 GOFLAGS=-mod=mod go build -tags "$tags" -trimpath -ldflags "$ldflags" -o "$out/" "$@")
    if declare -F "after_build_$family" >/dev/null; then "after_build_$family" "$dir" "$out"; fi
    touch "$out/.complete"
  fi
  for f in "$out"/*; do ln -sfn "$f" "$bin/$(basename "$f")"; done
}

# Kueue's manager reads its metrics certificate from a fixed folder under /etc
# unless it manages certificates itself (which would name them for an in-cluster
# Service). Its main package (one file, public imports only) is built from a
# copy patched by main.go.sed, in a module beside the binary, so the harness
# can point it elsewhere; the module cache stays untouched.
# `go list -m` names the module's folder only once it is downloaded: on a fresh machine it is not.
kueue_module() { (cd "$1" && GOFLAGS=-mod=mod go mod download sigs.k8s.io/kueue && GOFLAGS=-mod=mod go list -m -f '{{.Dir}}' sigs.k8s.io/kueue); }
prepare_kueue() { # dir out → folder to build "." in
  local src="$2/.src"
  mkdir -p "$src"
  cp "$1/go.mod" "$1/go.sum" "$src/"
  sed -f "$1/main.go.sed" "$(kueue_module "$1")/cmd/kueue/main.go" >"$src/main.go"
  grep -q KUEUE_METRICS_CERT_DIR "$src/main.go" || { echo "build-binaries: main.go.sed no longer applies to Kueue's main.go" >&2; exit 1; }
  echo "$src"
}
after_build_kueue() { # dir out: the CRDs and webhook configurations of the same release, for the harness
  local src; src="$(kueue_module "$1")/config/components"
  mkdir -p "$2/kueue-manifests"
  cp "$src"/crd/bases/*.yaml "$src/webhook/manifests.yaml" "$2/kueue-manifests/"
  chmod -R u+w "$2/kueue-manifests"
}

build_family etcd .
# kubelet and cri-cleanup (sandbox removal through the CRI) serve the harness's real node.
build_family kubernetes k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl k8s.io/kubernetes/cmd/kubelet ./cri-cleanup
build_family kwok sigs.k8s.io/kwok/cmd/kwok
# The real node's runtime (runc comes from the distribution: see .ci/run).
build_family containerd github.com/containerd/containerd/v2/cmd/containerd github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2 github.com/containerd/containerd/v2/cmd/ctr
build_family node-tools github.com/containernetworking/plugins/plugins/ipam/host-local github.com/containernetworking/plugins/plugins/main/bridge github.com/containernetworking/plugins/plugins/main/loopback ./pause ./testbox
build_family helm helm.sh/helm/v3/cmd/helm
build_family kube-state-metrics k8s.io/kube-state-metrics/v2
build_family dashboard-linter github.com/grafana/dashboard-linter
build_family kueue .
echo "$bin"
