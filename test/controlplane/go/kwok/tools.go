//go:build tools

// Keeps the kwok command in this module's dependency graph.
package tools

import _ "sigs.k8s.io/kwok/cmd/kwok"
