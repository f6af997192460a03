//go:build !linux

package browser

const markerEnv = "ADP_BROWSER_INSTANCE"

// Without /proc the pool cannot find orphaned Chromium processes; it relies
// on Playwright closing the browser's process group.
func markedPIDs(string) []int { return nil }
func browserPID(string) int   { return 0 }
func killMarked(string) int   { return 0 }
func processAlive(int) bool   { return true }
