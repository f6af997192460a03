package sandbox

import (
	"bytes"
	"os"
	"strconv"
	"time"
)

// processPollInterval is how often the parent counts a jail's processes
// against Limits.MaxProcs.
//
// The kernel has no bound on processes that leaves threads alone:
// RLIMIT_NPROC and the pids cgroup both count threads. So threads are
// bounded there (Limits.MaxThreads) and processes here: a jail with more
// than MaxProcs processes is killed. A burst of forks between two counts
// is bounded by MaxThreads; without a memory cgroup, the jail's memory is
// bounded by MaxProcs × the address-space limit once it is counted.
const processPollInterval = 10 * time.Millisecond

// watchProcesses counts the processes of r's jail every
// processPollInterval until stop is closed, and kills the jail once there
// are more than maxProcs.
func (r *running) watchProcesses(maxProcs int, stop <-chan struct{}) {
	t := time.NewTicker(processPollInterval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		if countDescendants(r.pid(), maxProcs+1) > maxProcs {
			r.kill(killProcesses)
			return
		}
	}
}

// countDescendants counts the processes that descend from pid (pid itself
// not included), the children of each of their threads, up to atMost.
// Processes are only ever reparented within a jail (to its pid
// namespace's init), so the jail's supervisor's descendants are all of the
// jail's processes. A process that exits during the walk may be missed;
// the next count sees what remains.
func countDescendants(pid, atMost int) int {
	n := 0
	stack := []int{pid}
	for len(stack) > 0 && n < atMost {
		p := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		dir := "/proc/" + strconv.Itoa(p) + "/task/"
		tasks, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		for _, task := range tasks {
			data, err := os.ReadFile(dir + task.Name() + "/children")
			if err != nil {
				continue
			}
			for _, f := range bytes.Fields(data) {
				child, err := strconv.Atoi(string(f))
				if err != nil {
					continue
				}
				n++
				stack = append(stack, child)
			}
		}
	}
	return n
}
