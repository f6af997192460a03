//go:build !linux

package browser

const markerEnv = "ADP_BROWSER_INSTANCE"

// Without /proc the pool cannot find Chromium's processes itself; it relies
// on Playwright killing the browser's process group, and on disconnect
// events alone to notice a crash.
func browserPID(string) (int, uint64) { return 0, 0 }
func sessionPIDs(int, uint64) []int   { return nil }
func killSession(int, uint64) int     { return 0 }
func processAlive(int) bool           { return true }

type procStat struct {
	pid, ppid, sid int
	state          byte
	start          uint64
}

func readStat(int) (procStat, bool) { return procStat{}, false }
