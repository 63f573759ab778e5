//go:build tools

// Keeps the helm command in this module's dependency graph. build-binaries.sh
// stamps it with its version and its client-go's Kubernetes version.
package tools

import _ "helm.sh/helm/v3/cmd/helm"
