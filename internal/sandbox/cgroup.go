package sandbox

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// The cgroup controllers the jails use where the host lets the runtime
// create cgroups (detected once, at New):
//
//   - memory: the jail's memory as a whole, page cache and tmpfs pages
//     included, is bounded by memory.max (v2) or memory.limit_in_bytes
//     (v1) = Limits.MemoryBytes + Limits.TmpfsBytes; the kernel's OOM
//     killer ends the jail past it (memory_limit). No address-space rlimit
//     is set then, so runtimes that reserve more than they use (glibc's
//     thread stacks and arenas, the JVM, Go) run as they do in a container.
//   - pids: processes plus threads, pids.max = Limits.MaxThreads (the
//     same number as RLIMIT_NPROC, which is set either way).
//
// Where no v2 controller is enabled for children of the mount, the jails
// run under rlimits alone (see Limits), unless Config.Cgroups is "v1":
// then writable v1 hierarchies are used. v1 is not the default because a
// cgroup per run costs there: creating and removing a v1 memory cgroup
// for each jail took 20-25 % of the sandbox's end-to-end throughput on
// the measured host (docs/benchmarks.md). Config.Cgroups "off" forces
// rlimits alone.
//
// nsjail creates and removes each jail's cgroup itself (its
// --cgroup_mem_* and --cgroup_pids_* options, or --use_cgroupv2); under
// bwrap the runtime does, and moves the jailed process into it while it
// waits on --block-fd, before the program runs.

// Cgroups settings of Config.
const (
	// CgroupsAuto: cgroup v2 controllers where the host delegates them.
	CgroupsAuto = "auto"
	// CgroupsV1: as auto, else writable cgroup v1 hierarchies.
	CgroupsV1  = "v1"
	CgroupsOff = "off"
)

// cgroupV1Parent is the cgroup, in each v1 hierarchy, under which jails'
// cgroups are created (by nsjail: NSJAIL.<pid>; by bwrap runs:
// bwrap.<run id>). It is created at start and left in place.
const cgroupV1Parent = "adp-sandbox"

// The v1 hierarchies nsjail looks in by default.
const (
	cgroupV1Memory = "/sys/fs/cgroup/memory"
	cgroupV1Pids   = "/sys/fs/cgroup/pids"
)

// cgroupSupport says which cgroup controllers the jails can use, and how.
type cgroupSupport struct {
	memory, pids bool
	// v1: the controllers are v1 hierarchies (memoryRoot, pidsRoot hold
	// cgroupV1Parent); otherwise they are enabled for children of the v2
	// mount (cgroupV2Mount).
	v1                   bool
	memoryRoot, pidsRoot string
}

// any reports whether a controller is in use.
func (c cgroupSupport) any() bool { return c.memory || c.pids }

// String says what bounds memory and threads, for the log at start.
func (c cgroupSupport) String() string {
	kind := "cgroup v2"
	if c.v1 {
		kind = "cgroup v1"
	}
	mem, thr := "RLIMIT_AS per process", "RLIMIT_NPROC"
	if c.memory {
		mem = kind + " memory controller per jail"
	}
	if c.pids {
		thr = kind + " pids controller per jail and RLIMIT_NPROC"
	}
	return "memory: " + mem + "; processes+threads: " + thr
}

// detectCgroups finds the controllers the jails can use: cgroup v2 at
// v2mount when it enables them for children, else writable v1
// hierarchies (where the runtime creates cgroupV1Parent). setting is
// Config.Cgroups.
func detectCgroups(setting, v2mount string) cgroupSupport {
	if setting == CgroupsOff {
		return cgroupSupport{}
	}
	if c := detectCgroupV2(v2mount); c.any() || setting != CgroupsV1 {
		return c
	}
	c := cgroupSupport{v1: true}
	if root, ok := v1Parent(cgroupV1Memory); ok {
		c.memory, c.memoryRoot = true, root
	}
	if root, ok := v1Parent(cgroupV1Pids); ok {
		c.pids, c.pidsRoot = true, root
	}
	if !c.any() {
		return cgroupSupport{}
	}
	return c
}

// detectCgroupV2 reports which controllers nsjail can use under mount: it
// must be a cgroup v2 hierarchy with the controller already enabled for
// children (nsjail creates one child cgroup per jail) and writable by us.
// cgroup v1 and undelegated hierarchies get rlimits only.
func detectCgroupV2(mount string) cgroupSupport {
	var st unix.Statfs_t
	if err := unix.Statfs(mount, &st); err != nil || st.Type != unix.CGROUP2_SUPER_MAGIC {
		return cgroupSupport{}
	}
	if unix.Access(mount, unix.W_OK) != nil {
		return cgroupSupport{}
	}
	data, err := os.ReadFile(filepath.Join(mount, "cgroup.subtree_control"))
	if err != nil {
		return cgroupSupport{}
	}
	enabled := strings.Fields(string(data))
	has := func(c string) bool {
		for _, e := range enabled {
			if e == c {
				return true
			}
		}
		return false
	}
	return cgroupSupport{memory: has("memory"), pids: has("pids")}
}

// v1Parent creates cgroupV1Parent in the v1 hierarchy at mount and
// returns its path, when mount is one and we may create cgroups in it.
func v1Parent(mount string) (string, bool) {
	var st unix.Statfs_t
	if err := unix.Statfs(mount, &st); err != nil || st.Type != unix.CGROUP_SUPER_MAGIC {
		return "", false
	}
	dir := filepath.Join(mount, cgroupV1Parent)
	if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return "", false
	}
	// A cgroup of our own proves the hierarchy is ours to use.
	probe := filepath.Join(dir, "probe."+strconv.Itoa(os.Getpid()))
	if err := os.Mkdir(probe, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return "", false
	}
	if err := os.Remove(probe); err != nil {
		return "", false
	}
	return dir, true
}

// runCgroup is the cgroup (one per controller under v1) of one bwrap run.
type runCgroup struct {
	c    cgroupSupport
	dirs []string // created, removed by remove
	mem  string   // the directory holding the memory controller's files
}

// newRunCgroup creates the cgroup of run runID with lim's bounds.
func newRunCgroup(c cgroupSupport, runID string, lim Limits) (*runCgroup, error) {
	rc := &runCgroup{c: c}
	name := "bwrap." + runID
	mkdir := func(parent string) (string, error) {
		dir := filepath.Join(parent, name)
		if err := os.Mkdir(dir, 0o755); err != nil {
			return "", err
		}
		rc.dirs = append(rc.dirs, dir)
		return dir, nil
	}
	memBytes := strconv.FormatInt(lim.MemoryBytes+lim.TmpfsBytes, 10)
	pids := strconv.Itoa(lim.MaxThreads)
	var err error
	if !c.v1 {
		var dir string
		if dir, err = mkdir(cgroupV2Mount); err == nil {
			rc.mem = dir
			if c.memory {
				err = errors.Join(writeCgroup(dir, "memory.max", memBytes), writeCgroup(dir, "memory.swap.max", "0"))
			}
			if err == nil && c.pids {
				err = writeCgroup(dir, "pids.max", pids)
			}
		}
	} else {
		if c.memory {
			var dir string
			if dir, err = mkdir(c.memoryRoot); err == nil {
				rc.mem = dir
				err = writeCgroup(dir, "memory.limit_in_bytes", memBytes)
			}
		}
		if err == nil && c.pids {
			var dir string
			if dir, err = mkdir(c.pidsRoot); err == nil {
				err = writeCgroup(dir, "pids.max", pids)
			}
		}
	}
	if err != nil {
		rc.remove()
		return nil, fmt.Errorf("creating the jail's cgroup: %w", err)
	}
	return rc, nil
}

// swap.max is absent where the kernel has no swap accounting: nothing to
// bound then.
func writeCgroup(dir, file, value string) error {
	err := os.WriteFile(filepath.Join(dir, file), []byte(value), 0)
	if err != nil && file == "memory.swap.max" && errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}

// add moves process pid into the cgroup.
func (rc *runCgroup) add(pid int) error {
	for _, dir := range rc.dirs {
		if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0); err != nil {
			return fmt.Errorf("moving the jail into cgroup %s: %w", dir, err)
		}
	}
	return nil
}

// oomKilled reports whether the kernel's OOM killer killed a process of
// the cgroup at its memory limit.
func (rc *runCgroup) oomKilled() bool {
	if rc == nil || !rc.c.memory || rc.mem == "" {
		return false
	}
	file := "memory.events" // v2
	if rc.c.v1 {
		file = "memory.oom_control"
	}
	data, err := os.ReadFile(filepath.Join(rc.mem, file))
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "oom_kill "); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(v))
			return n > 0
		}
	}
	return false
}

// remove removes the cgroup once the jail is gone. A cgroup's last
// processes may take a moment to leave it after their parent has been
// reaped (EBUSY meanwhile).
func (rc *runCgroup) remove() {
	if rc == nil {
		return
	}
	for _, dir := range rc.dirs {
		for i := 0; ; i++ {
			err := unix.Rmdir(dir)
			if err == nil || errors.Is(err, unix.ENOENT) || i == 200 {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	rc.dirs = nil
}

// rlimitAS is nsjail's --rlimit_as: MemoryBytes in MiB without a memory
// cgroup; with one, the runtime's own hard limit (normally unlimited),
// since the cgroup bounds the jail's memory.
func rlimitAS(cg cgroupSupport, lim Limits) string {
	if cg.memory {
		return "hard"
	}
	return strconv.FormatInt(ceilMiB(lim.MemoryBytes), 10)
}

// cgroupsOf returns the cgroup controllers of j's runs: none for a Jail
// of another kind. Limit's wrapper is looked through.
func cgroupsOf(j Jail) cgroupSupport {
	if l, ok := j.(*limited); ok {
		j = l.Jail
	}
	jj, ok := j.(*jail)
	if !ok {
		return cgroupSupport{}
	}
	switch l := jj.l.(type) {
	case *nsjailJail:
		return l.cg
	case *bwrapJail:
		return l.cg
	}
	return cgroupSupport{}
}

// Bounds says what bounds the memory and the threads of j's runs on this
// host (a cgroup controller or an rlimit), for the runtime's log at start.
func Bounds(j Jail) string { return cgroupsOf(j).String() }
