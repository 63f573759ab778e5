//go:build tools

// Keeps Kueue's controller manager in this module's dependency graph.
package tools

import _ "sigs.k8s.io/kueue/cmd/kueue"
