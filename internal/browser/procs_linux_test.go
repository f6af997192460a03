package browser

import (
	"bytes"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

type procInfo struct {
	pid, ppid int
	comm      string
	state     byte
}

func readProcs(t *testing.T) map[int]procInfo {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatalf("reading /proc: %v", err)
	}
	out := map[int]procInfo{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...; comm may contain spaces and parentheses.
		lp, rp := bytes.IndexByte(stat, '('), bytes.LastIndexByte(stat, ')')
		if lp < 0 || rp < 0 {
			continue
		}
		fields := strings.Fields(string(stat[rp+1:]))
		if len(fields) < 2 {
			continue
		}
		ppid, _ := strconv.Atoi(fields[1])
		out[pid] = procInfo{pid: pid, ppid: ppid, comm: string(stat[lp+1 : rp]), state: fields[0][0]}
	}
	return out
}

// procCensus counts what this test process has left behind: Chromium
// processes among its descendants (zombies included), zombies among its
// descendants of any kind, and live processes carrying the pool's marker
// wherever they are in the tree (an orphan re-parented to init is not a
// descendant any more, but still carries the marker).
type procCensus struct {
	chromium int // descendants named chromium*, zombie or not
	zombies  int // descendants in state Z
	marked   int // live processes with markerEnv=<pool id>.*
}

func takeCensus(t *testing.T, poolID string) procCensus {
	t.Helper()
	procs := readProcs(t)
	self := os.Getpid()
	var c procCensus
	for pid, p := range procs {
		if pid == self || !isDescendant(procs, pid, self) {
			continue
		}
		if strings.HasPrefix(p.comm, "chromium") || strings.HasPrefix(p.comm, "chrome") {
			c.chromium++
		}
		if p.state == 'Z' {
			c.zombies++
		}
	}
	if poolID != "" {
		want := []byte(markerEnv + "=" + poolID + ".")
		for pid := range procs {
			env, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/environ")
			if err != nil {
				continue
			}
			for _, kv := range bytes.Split(env, []byte{0}) {
				if bytes.HasPrefix(kv, want) {
					c.marked++
					break
				}
			}
		}
	}
	return c
}

func isDescendant(procs map[int]procInfo, pid, ancestor int) bool {
	for i := 0; i < 64 && pid > 1; i++ {
		p, ok := procs[pid]
		if !ok {
			return false
		}
		if p.ppid == ancestor {
			return true
		}
		pid = p.ppid
	}
	return false
}

// waitForCensus polls until cond holds or a generous deadline passes (the
// browser's teardown is asynchronous), and returns the last census.
func waitForCensus(t *testing.T, poolID string, cond func(procCensus) bool) procCensus {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		c := takeCensus(t, poolID)
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
