//go:build tools

// Keeps the kube-state-metrics command in this module's dependency graph.
package tools

import _ "k8s.io/kube-state-metrics/v2"
