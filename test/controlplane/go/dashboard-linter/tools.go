//go:build tools

// Keeps Grafana's dashboard-linter command in this module's dependency graph.
package tools

import _ "github.com/grafana/dashboard-linter"
