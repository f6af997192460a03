package browser

import (
	"bytes"
	"os"
	"strconv"
	"syscall"
)

// Chromium and every process it forks carry markerEnv=<instance id> in their
// environment, so that the pool can find them by /proc even after they have
// been re-parented (Chromium killed, its zygote and renderers orphaned) and
// kill whatever is left when a browser is retired. Reading another process's
// environ needs the same user, which is exactly the set we may kill.
const markerEnv = "ADP_BROWSER_INSTANCE"

// markedPIDs lists the live processes whose environment holds
// markerEnv=value (zombies have no readable environment and are not listed).
func markedPIDs(value string) []int {
	want := []byte(markerEnv + "=" + value)
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		env, err := os.ReadFile("/proc/" + e.Name() + "/environ")
		if err != nil {
			continue
		}
		for _, kv := range bytes.Split(env, []byte{0}) {
			if bytes.Equal(kv, want) {
				pids = append(pids, pid)
				break
			}
		}
	}
	return pids
}

// browserPID finds the Chromium browser process of an instance: the marked
// process without a --type= switch (zygotes, renderers and utility processes
// all have one). 0 if not found.
func browserPID(marker string) int {
	for _, pid := range markedPIDs(marker) {
		cmdline, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
		if err != nil || len(cmdline) == 0 {
			continue
		}
		if !bytes.Contains(cmdline, []byte("--type=")) {
			return pid
		}
	}
	return 0
}

// killMarked SIGKILLs every live process of an instance and reports how many
// it signalled. The pids come from a fresh scan of /proc, so a pid reused
// since an earlier scan is not hit.
func killMarked(marker string) int {
	n := 0
	for _, pid := range markedPIDs(marker) {
		if err := syscall.Kill(pid, syscall.SIGKILL); err == nil {
			n++
		}
	}
	return n
}

// processAlive reports whether pid exists and is not a zombie.
func processAlive(pid int) bool {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 || i+2 >= len(stat) {
		return false
	}
	state := stat[i+2]
	return state != 'Z' && state != 'X'
}
