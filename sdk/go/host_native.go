//go:build !wasip1

package plugin

// Outside WebAssembly (a plugin's own `go test`) there is no ferry to log
// to or count with: the records are dropped.

func hostLog(Level, string, []string) {}

func hostCount(string, uint64) {}
