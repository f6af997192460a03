package browser

import (
	"bytes"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// Finding an instance's processes. Playwright starts Chromium detached: the
// browser process leads a new session, and every process Chromium forks
// (zygotes, renderers, GPU and utility processes) stays in that session even
// when it is re-parented after the browser died. So the session id, checked
// against the leader's start time, finds them all, orphans included.
//
// The browser process itself is found by an environment marker:
// markerEnv=<instance id>. (Chromium's children rewrite their environment
// block for their process titles, so the marker identifies only the browser
// process, which is all it is used for.)
const markerEnv = "ADP_BROWSER_INSTANCE"

// procStat is the part of /proc/<pid>/stat the pool needs.
type procStat struct {
	pid, ppid, sid int
	state          byte
	start          uint64 // clock ticks after boot
}

func readStat(pid int) (procStat, bool) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procStat{}, false
	}
	// pid (comm) state ppid pgrp session ... starttime is field 22; comm may
	// hold spaces and parentheses, so split after the last ')'.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return procStat{}, false
	}
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 20 {
		return procStat{}, false
	}
	ppid, _ := strconv.Atoi(f[1])
	sid, _ := strconv.Atoi(f[3])
	start, _ := strconv.ParseUint(f[19], 10, 64)
	return procStat{pid: pid, ppid: ppid, sid: sid, state: f[0][0], start: start}, true
}

func allPIDs() []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	pids := make([]int, 0, len(entries))
	for _, e := range entries {
		if pid, err := strconv.Atoi(e.Name()); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids
}

// browserPID finds the Chromium browser process of an instance by its
// marker, and its start time. 0 if not found.
func browserPID(marker string) (int, uint64) {
	want := []byte(markerEnv + "=" + marker)
	for _, pid := range allPIDs() {
		if pid == os.Getpid() {
			continue
		}
		env, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/environ")
		if err != nil || !containsEntry(env, want) {
			continue
		}
		cmdline, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
		if err != nil || len(cmdline) == 0 || bytes.Contains(cmdline, []byte("--type=")) {
			continue
		}
		if st, ok := readStat(pid); ok {
			return pid, st.start
		}
	}
	return 0, 0
}

func containsEntry(env, want []byte) bool {
	for _, kv := range bytes.Split(env, []byte{0}) {
		if bytes.Equal(kv, want) {
			return true
		}
	}
	return false
}

// sessionPIDs lists the live processes of the Chromium whose browser process
// was leader (started at leaderStart): the members of its session. If the
// leader's pid now belongs to another process, the session number was freed,
// which means no member is left: nothing is returned.
func sessionPIDs(leader int, leaderStart uint64) []int {
	if leader <= 0 {
		return nil
	}
	if st, ok := readStat(leader); ok && st.start != leaderStart {
		return nil
	}
	var pids []int
	for _, pid := range allPIDs() {
		st, ok := readStat(pid)
		if !ok || st.sid != leader || st.state == 'Z' || st.state == 'X' {
			continue
		}
		pids = append(pids, pid)
	}
	return pids
}

// killSession SIGKILLs what is left of an instance's Chromium and reports
// how many processes it signalled.
func killSession(leader int, leaderStart uint64) int {
	n := 0
	for _, pid := range sessionPIDs(leader, leaderStart) {
		if err := syscall.Kill(pid, syscall.SIGKILL); err == nil {
			n++
		}
	}
	return n
}

// processAlive reports whether pid exists and is not a zombie.
func processAlive(pid int) bool {
	st, ok := readStat(pid)
	return ok && st.state != 'Z' && st.state != 'X'
}
