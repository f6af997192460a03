package browser

import (
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// procCensus counts what this test process has left behind:
//   - chromium: Chromium processes among its descendants, zombies included;
//   - zombies: zombies among its descendants, of any kind;
//   - inSession: live processes in the sessions of the given browsers,
//     wherever they are in the tree (an orphan re-parented to init is not a
//     descendant any more, but stays in its browser's session);
//   - renderers: live renderer processes among its descendants.
type procCensus struct {
	chromium, zombies, inSession, renderers int
}

func (i *instance) leader() [2]uint64 { return [2]uint64{uint64(i.pid), i.start} }

func takeCensus(t *testing.T, leaders ...[2]uint64) procCensus {
	t.Helper()
	self := os.Getpid()
	stats := map[int]procStat{}
	for _, pid := range allPIDs() {
		if st, ok := readStat(pid); ok {
			stats[pid] = st
		}
	}
	var c procCensus
	for pid, st := range stats {
		if pid == self || !isDescendant(stats, pid, self) {
			continue
		}
		comm, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
		isChromium := strings.HasPrefix(string(comm), "chrom")
		if isChromium {
			c.chromium++
		}
		if st.state == 'Z' {
			c.zombies++
			continue
		}
		if cmd, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline"); isChromium && strings.Contains(string(cmd), "--type=renderer") {
			c.renderers++
		}
	}
	for _, l := range leaders {
		c.inSession += len(sessionPIDs(int(l[0]), l[1]))
	}
	return c
}

func isDescendant(stats map[int]procStat, pid, ancestor int) bool {
	for i := 0; i < 64 && pid > 1; i++ {
		st, ok := stats[pid]
		if !ok {
			return false
		}
		if st.ppid == ancestor {
			return true
		}
		pid = st.ppid
	}
	return false
}

// waitForCensus polls until cond holds or a generous deadline passes (the
// browser's teardown is asynchronous), and returns the last census.
func waitForCensus(t *testing.T, cond func(procCensus) bool, leaders ...[2]uint64) procCensus {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		c := takeCensus(t, leaders...)
		if cond(c) || time.Now().After(deadline) {
			return c
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// pidExists reports whether /proc has pid, zombie or not.
func pidExists(pid int) bool {
	_, err := os.Stat("/proc/" + strconv.Itoa(pid))
	return err == nil
}

func stateOf(pid int) string {
	st, ok := readStat(pid)
	if !ok {
		return "gone"
	}
	return string(st.state)
}
