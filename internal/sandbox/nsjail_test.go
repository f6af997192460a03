package sandbox

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/agentdataplatform/adp/internal/core"
)

// nsjail is not installed on development machines, so its backend is
// covered here without it: the policy file as shipped, the command line
// built per run, and the interpretation of nsjail's exit statuses (through
// a stand-in binary that only plays nsjail's exit protocol and runs
// nothing). The conformance suite runs the real thing where it exists.

func shippedPolicy(t *testing.T) (*pbMessage, string) {
	t.Helper()
	path, err := FindNsjailConfig("")
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	m, err := parsePBText(string(data))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return m, path
}

func TestShippedPolicy(t *testing.T) {
	m, path := shippedPolicy(t)
	pol, problems := checkNsjailPolicy(m)
	if len(problems) > 0 {
		t.Fatalf("%s: %v", path, problems)
	}
	want := map[string]string{
		"mode":              "ONCE",
		"hostname":          "sandbox",
		"nice_level":        "0",
		"cwd":               "/tmp",
		"time_limit":        "30",
		"keep_env":          "false",
		"keep_caps":         "false",
		"clone_newnet":      "true",
		"clone_newuser":     "true",
		"clone_newns":       "true",
		"clone_newpid":      "true",
		"clone_newipc":      "true",
		"clone_newuts":      "true",
		"iface_no_lo":       "true",
		"mount_proc":        "false",
		"rlimit_as":         "1024",
		"rlimit_cpu":        "30",
		"rlimit_fsize":      "16",
		"rlimit_nofile":     "64",
		"rlimit_nproc":      "256",
		"rlimit_nproc_type": "VALUE",
		"rlimit_core":       "0",
	}
	for k, v := range want {
		if got, ok := m.Scalar(k); !ok || got != v {
			t.Errorf("%s = %q (set %v), want %q", k, got, ok, v)
		}
	}
	// The file's fallbacks are the production defaults.
	d := DefaultLimits()
	for k, v := range map[string]int64{
		"rlimit_as": ceilMiB(d.MemoryBytes), "rlimit_cpu": cpuSeconds(d.CPU), "rlimit_fsize": ceilMiB(d.MaxFileBytes),
		"rlimit_nofile": int64(d.MaxOpenFiles), "rlimit_nproc": int64(d.MaxThreads), "time_limit": int64(d.Wall / time.Second),
	} {
		if got, _ := m.Scalar(k); got != strconv.FormatInt(v, 10) {
			t.Errorf("%s = %s, DefaultLimits says %d", k, got, v)
		}
	}
	if !pol.hasIDMaps {
		t.Error("the policy should map uid/gid 65534 itself")
	}
	if pol.tmpfsBytes != d.TmpfsBytes {
		t.Errorf("/tmp tmpfs is %d bytes, DefaultLimits says %d", pol.tmpfsBytes, d.TmpfsBytes)
	}
	if want := tmpfsInodes(d.TmpfsBytes); pol.tmpfsInodes != want {
		t.Errorf("/tmp tmpfs has nr_inodes=%d, want %d for its size", pol.tmpfsInodes, want)
	}
	// Environment in step with the bwrap backend's.
	if got := m.All("envar"); len(got) != len(policyEnv) {
		t.Errorf("envar = %v, want %v", got, policyEnv)
	} else {
		for i, f := range got {
			if f.Value != policyEnv[i] {
				t.Errorf("envar %d = %q, want %q", i, f.Value, policyEnv[i])
			}
		}
	}
	// Mounts: /usr read-only, a sized /tmp tmpfs, the three device nodes,
	// nothing of /etc or /proc.
	mounts := map[string]*pbMessage{}
	for _, mp := range m.Messages("mount") {
		dst, _ := mp.Scalar("dst")
		mounts[dst] = mp
	}
	for _, dst := range []string{"/usr", "/tmp", "/dev/null", "/dev/zero", "/dev/urandom"} {
		if mounts[dst] == nil {
			t.Errorf("no mount of %s", dst)
		}
	}
	if rw, _ := mounts["/usr"].Scalar("rw"); rw != "false" {
		t.Errorf("/usr rw = %q", rw)
	}
	if fs, _ := mounts["/tmp"].Scalar("fstype"); fs != "tmpfs" {
		t.Errorf("/tmp fstype = %q", fs)
	}
	for dst := range mounts {
		if under(dst, "/etc") || under(dst, "/proc") || under(dst, "/sys") || under(dst, "/root") {
			t.Errorf("policy mounts %s", dst)
		}
	}
}

func TestCheckNsjailPolicyRejects(t *testing.T) {
	m, _ := shippedPolicy(t)
	base := m.Fields
	cases := []struct {
		name  string
		extra string
		want  string
	}{
		{"network", "clone_newnet: false", "clone_newnet"},
		{"loopback up", "iface_no_lo: false", "iface_no_lo"},
		{"proc", "mount_proc: true", "mount_proc"},
		{"host env", "keep_env: true", "keep_env"},
		{"nproc from the soft limit", "rlimit_nproc_type: SOFT", "rlimit_nproc_type"},
		{"rerun mode", "mode: RERUN", "mode"},
		{"etc", `mount { src: "/etc" dst: "/etc" is_bind: true }`, "/etc"},
		{"rw bind", `mount { src: "/opt" dst: "/opt" is_bind: true rw: true }`, "read-only"},
		{"unsized tmpfs", `mount { dst: "/scratch" fstype: "tmpfs" rw: true }`, "size"},
		{"tmpfs without an inode cap", `mount { dst: "/scratch" fstype: "tmpfs" options: "size=1048576" rw: true }`, "nr_inodes"},
		{"filter from a file", `seccomp_policy_file: "/x.kafel"`, "seccomp_policy_file"},
		{"root mapping", `uidmap { inside_id: "65534" outside_id: "0" }`, "uidmap"},
		{"interface", `macvlan_iface: "eth0"`, "interface"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			extra, err := parsePBText(tc.extra)
			if err != nil {
				t.Fatal(err)
			}
			mm := &pbMessage{Fields: append(slices.Clone(base), extra.Fields...)}
			_, problems := checkNsjailPolicy(mm)
			if !strings.Contains(strings.Join(problems, "; "), tc.want) {
				t.Errorf("problems = %v, want one about %q", problems, tc.want)
			}
		})
	}
	// A policy without any id mapping is fine: the command line adds it.
	var noMaps []pbField
	for _, f := range base {
		if f.Name != "uidmap" && f.Name != "gidmap" {
			noMaps = append(noMaps, f)
		}
	}
	pol, problems := checkNsjailPolicy(&pbMessage{Fields: noMaps})
	if len(problems) > 0 || pol.hasIDMaps {
		t.Errorf("policy without maps: %v, hasIDMaps=%v", problems, pol.hasIDMaps)
	}
	// A policy without the system-call filter is refused.
	var noFilter []pbField
	for _, f := range base {
		if f.Name != "seccomp_string" {
			noFilter = append(noFilter, f)
		}
	}
	if _, problems := checkNsjailPolicy(&pbMessage{Fields: noFilter}); !strings.Contains(strings.Join(problems, "; "), "seccomp_string") {
		t.Errorf("policy without a filter: problems = %v", problems)
	}
	// Missing limits are reported, not defaulted.
	var noLimits []pbField
	for _, f := range base {
		if !strings.HasPrefix(f.Name, "rlimit_") && f.Name != "time_limit" {
			noLimits = append(noLimits, f)
		}
	}
	_, problems = checkNsjailPolicy(&pbMessage{Fields: noLimits})
	for _, want := range []string{"time_limit", "rlimit_as", "rlimit_cpu", "rlimit_fsize", "rlimit_nofile", "rlimit_nproc"} {
		if !strings.Contains(strings.Join(problems, "; "), want+" must be set") {
			t.Errorf("problems = %v, want %s must be set", problems, want)
		}
	}
}

// flagValues returns the values following each occurrence of flag.
func flagValues(argv []string, flag string) []string {
	var out []string
	for i := 0; i+1 < len(argv); i++ {
		if argv[i] == "--" {
			break
		}
		if argv[i] == flag {
			out = append(out, argv[i+1])
		}
	}
	return out
}

func TestNsjailArgs(t *testing.T) {
	lim := Limits{
		Wall: 2500 * time.Millisecond, CPU: 1500 * time.Millisecond, MemoryBytes: 100<<20 + 1,
		MaxProcs: 3, MaxThreads: 7, MaxFileBytes: 3 << 20, MaxOpenFiles: 20, TmpfsBytes: 8 << 20,
		KeepOutputBytes: 1024, MaxOutputBytes: 4096,
	}
	pol := nsjailPolicy{path: "/etc/adp/nsjail/python.cfg", hasIDMaps: true, tmpfsBytes: 64 << 20, tmpfsInodes: 4096}
	py := interpreter{path: "/usr/bin/python3"}
	argv := nsjailArgs("/usr/local/bin/nsjail", pol, cgroupSupport{}, lim, mustSpec(t, Request{}, py), "abc", true)

	if argv[0] != "/usr/local/bin/nsjail" || argv[1] != "--config" || argv[2] != "/proc/self/fd/4" {
		t.Errorf("argv starts %q: the configuration (from fd 4) must come first so the per-run flags override it", argv[:3])
	}
	want := map[string]string{
		"--log_fd":        "3",
		"--time_limit":    "4", // ceil(2.5s) + 1: a backstop behind the parent's kill
		"--rlimit_as":     "101",
		"--rlimit_cpu":    "3", // ceil(1.5s) + 1: the hard limit, as under bwrap
		"--rlimit_fsize":  "3",
		"--rlimit_nofile": "20",
		"--rlimit_nproc":  "7",
		"--rlimit_core":   "0",
		"--env":           "SANDBOX_RUN_ID=abc",
		"--mount":         "none:/tmp:tmpfs:size=8388608,nr_inodes=1024",
	}
	for flag, v := range want {
		if got := flagValues(argv, flag); len(got) != 1 || got[0] != v {
			t.Errorf("%s = %q, want [%q]", flag, got, v)
		}
	}
	// The program comes in the configuration, not from a host directory.
	if got := flagValues(argv, "--bindmount_ro"); got != nil {
		t.Errorf("--bindmount_ro %q: nothing of the host is bound per run", got)
	}
	// Started in a network namespace of the parent's: nsjail creates none.
	if !slices.Contains(argv, "--disable_clone_newnet") {
		t.Error("--disable_clone_newnet missing although the parent gives the network namespace")
	}
	// The policy maps 65534 itself: no second mapping on the command line.
	if got := flagValues(argv, "--user"); got != nil {
		t.Errorf("--user %q given although the policy maps the ids", got)
	}
	for _, f := range []string{"--use_cgroupv2", "--cgroup_mem_max", "--cgroup_pids_max", "--cgroup_mem_mount", "--cgroup_pids_mount"} {
		if slices.Contains(argv, f) {
			t.Errorf("%s given without cgroup support", f)
		}
	}
	tail := argv[slices.Index(argv, "--"):]
	if want := []string{"--", "/usr/bin/python3", "-I", "-S", "-u", "/sandbox/main.py"}; !slices.Equal(tail, want) {
		t.Errorf("command = %q, want %q", tail, want)
	}

	// A policy without id maps, the default tmpfs size, cgroups usable, an
	// interpreter outside /usr.
	pol = nsjailPolicy{path: "p.cfg", tmpfsBytes: 8 << 20, tmpfsInodes: 1024}
	py = interpreter{path: "/opt/py/bin/python3.12", prefix: "/opt/py"}
	argv = nsjailArgs("nsjail", pol, cgroupSupport{memory: true, pids: true}, lim, mustSpec(t, Request{}, py), "x", false)
	if slices.Contains(argv, "--disable_clone_newnet") {
		t.Error("--disable_clone_newnet without a network namespace from the parent: the jail would share the host's")
	}
	if got := flagValues(argv, "--user"); !slices.Equal(got, []string{"65534:65534"}) {
		t.Errorf("--user = %q, want 65534:65534 (a bare 65534 maps to root outside)", got)
	}
	if got := flagValues(argv, "--group"); !slices.Equal(got, []string{"65534:65534"}) {
		t.Errorf("--group = %q, want 65534:65534", got)
	}
	if got := flagValues(argv, "--bindmount_ro"); !slices.Equal(got, []string{"/opt/py:/opt/py"}) {
		t.Errorf("--bindmount_ro = %q", got)
	}
	if got := flagValues(argv, "--mount"); got != nil {
		t.Errorf("--mount %q although the policy's /tmp has the right size", got)
	}
	if !slices.Contains(argv, "--use_cgroupv2") {
		t.Error("--use_cgroupv2 missing")
	}
	if got := flagValues(argv, "--cgroup_mem_max"); !slices.Equal(got, []string{strconv.FormatInt(lim.MemoryBytes+lim.TmpfsBytes, 10)}) {
		t.Errorf("--cgroup_mem_max = %q", got)
	}
	if got := flagValues(argv, "--cgroup_pids_max"); !slices.Equal(got, []string{"7"}) {
		t.Errorf("--cgroup_pids_max = %q", got)
	}
	// The memory cgroup bounds memory: the address space keeps the
	// runtime's hard limit.
	if got := flagValues(argv, "--rlimit_as"); !slices.Equal(got, []string{"hard"}) {
		t.Errorf("--rlimit_as = %q with a memory cgroup, want [hard]", got)
	}
	for _, f := range []string{"--cgroup_mem_mount", "--cgroup_mem_parent", "--cgroup_pids_mount", "--cgroup_pids_parent"} {
		if slices.Contains(argv, f) {
			t.Errorf("%s given with cgroup v2", f)
		}
	}

	// cgroup v1 hierarchies: nsjail's v1 options, under the runtime's parent.
	v1 := cgroupSupport{memory: true, pids: true, v1: true, memoryRoot: "/cg/memory/" + cgroupV1Parent, pidsRoot: "/cg/pids/" + cgroupV1Parent}
	argv = nsjailArgs("nsjail", pol, v1, lim, mustSpec(t, Request{}, py), "x", false)
	if slices.Contains(argv, "--use_cgroupv2") {
		t.Error("--use_cgroupv2 with cgroup v1")
	}
	for flag, v := range map[string]string{
		"--cgroup_mem_mount": "/cg/memory", "--cgroup_mem_parent": cgroupV1Parent,
		"--cgroup_pids_mount": "/cg/pids", "--cgroup_pids_parent": cgroupV1Parent, "--cgroup_pids_max": "7",
		"--cgroup_mem_max": strconv.FormatInt(lim.MemoryBytes+lim.TmpfsBytes, 10),
	} {
		if got := flagValues(argv, flag); !slices.Equal(got, []string{v}) {
			t.Errorf("cgroup v1: %s = %q, want [%q]", flag, got, v)
		}
	}
	if got := argv[len(argv)-5]; got != "/opt/py/bin/python3.12" {
		t.Errorf("interpreter = %q", got)
	}
}

func TestNsjailLaunchFailure(t *testing.T) {
	n := &nsjailJail{}
	log := []byte("[W][2025-01-01T00:00:00+0000] something minor\n[E][2025-01-01T00:00:00+0000][1] mountPt():178 mount('/usr', '/usr'): Permission denied\n[F][2025-01-01T00:00:00+0000][1] runChild():487 Launching child process failed\n")
	if msg, failed := n.launchFailure(outcome{exitCode: 255}, "", log); !failed || !strings.Contains(msg, "Permission denied") || strings.Contains(msg, "minor") {
		t.Errorf("255 with errors logged: %q, %v", msg, failed)
	}
	// The program's own exit(255): nsjail logs no error.
	if _, failed := n.launchFailure(outcome{exitCode: 255}, "", []byte("[W][...] pid=2 exited with status 255\n")); failed {
		t.Error("a program's exit(255) taken for a launch failure")
	}
	// 137 is a kill, never a launch failure.
	if _, failed := n.launchFailure(outcome{exitCode: 137, signal: syscall.SIGKILL}, "", log); failed {
		t.Error("137 taken for a launch failure")
	}
}

func TestDetectCgroupV2(t *testing.T) {
	// Whatever the host has, detection must not fail or claim support on a
	// path that is not a cgroup2 mount.
	if got := detectCgroupV2(t.TempDir()); got.memory || got.pids {
		t.Errorf("detectCgroupV2(tmpdir) = %+v", got)
	}
	t.Logf("cgroup v2 at %s: %+v", cgroupV2Mount, detectCgroupV2(cgroupV2Mount))
}

// fakeNsjail writes a stand-in for nsjail that records its command line and
// then plays one of nsjail's exit protocols. It never runs the program.
func fakeNsjail(t *testing.T, body string) (bin, argvFile string) {
	t.Helper()
	dir := t.TempDir()
	argvFile = filepath.Join(dir, "argv")
	bin = filepath.Join(dir, "nsjail")
	script := "#!/bin/sh\nprintf '%s\\n' \"$@\" > " + argvFile + "\n" + body + "\n"
	if err := os.WriteFile(bin, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return bin, argvFile
}

func newFakeNsjail(t *testing.T, body string) (Jail, string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("the nsjail backend requires root")
	}
	bin, argvFile := fakeNsjail(t, body)
	j, err := New(BackendNsjail, Config{NsjailPath: bin})
	if err != nil {
		t.Fatal(err)
	}
	return j, argvFile
}

func TestNsjailExitProtocol(t *testing.T) {
	lim := testLimits()
	t.Run("launch failure 255", func(t *testing.T) {
		j, argvFile := newFakeNsjail(t, `echo "[E][2025-01-01T00:00:00+0000][7] initNs():91 clone(flags=CLONE_NEWUSER) failed: Operation not permitted" >&3; exit 255`)
		res, err := j.Run(context.Background(), Request{Code: "print(1)", Limits: lim})
		if err == nil || res.ErrorType != core.ErrSystem || !strings.Contains(err.Error(), "Operation not permitted") {
			t.Fatalf("err = %v, result %s %q", err, res.ErrorType, res.ErrorMessage)
		}
		argv, _ := os.ReadFile(argvFile)
		for _, want := range []string{"--config", "--time_limit", "--rlimit_as", "--rlimit_cpu", "--rlimit_fsize", "--rlimit_nofile", "--rlimit_nproc", "/sandbox/main.py"} {
			if !strings.Contains(string(argv), want) {
				t.Errorf("nsjail was run without %s:\n%s", want, argv)
			}
		}
	})
	t.Run("program exit 255", func(t *testing.T) {
		j, _ := newFakeNsjail(t, `exit 255`)
		res, err := j.Run(context.Background(), Request{Code: "print(1)", Limits: lim})
		if err != nil || res.ErrorType != core.ErrRuntime || res.ExitCode != 255 {
			t.Fatalf("err = %v, result %s %q exit %d", err, res.ErrorType, res.ErrorMessage, res.ExitCode)
		}
	})
	t.Run("137 unexplained", func(t *testing.T) {
		j, _ := newFakeNsjail(t, `exit 137`)
		res, err := j.Run(context.Background(), Request{Code: "print(1)", Limits: lim})
		if err != nil || res.Signal != "SIGKILL" || res.ExitCode != 137 {
			t.Fatalf("err = %v, result %+v", err, res)
		}
		// Without the memory cgroup an unexplained SIGKILL is a runtime
		// error; with it, the memory limit.
		want := core.ErrRuntime
		if cgroupsOf(j).memory {
			want = core.ErrMemoryLimit
		}
		if res.ErrorType != want {
			t.Errorf("ErrorType = %q, want %q", res.ErrorType, want)
		}
	})
	t.Run("stdout, stderr and stdin plumbing", func(t *testing.T) {
		j, _ := newFakeNsjail(t, `read line; echo "out:$line"; echo "err" >&2; exit 0`)
		res, err := j.Run(context.Background(), Request{Code: "x", Stdin: []byte("in\n"), Limits: lim})
		if err != nil || !res.OK() || res.Stdout != "out:in\n" || res.Stderr != "err\n" {
			t.Fatalf("err = %v, result %+v", err, res)
		}
	})
	t.Run("wall limit: SIGTERM to nsjail", func(t *testing.T) {
		// nsjail kills and reaps its child on SIGTERM; the stand-in exits
		// 143 on it, like a killed supervisor.
		j, _ := newFakeNsjail(t, `trap 'exit 143' TERM; while :; do sleep 0.05; done`)
		l := lim
		l.Wall = 300 * time.Millisecond
		res, err := j.Run(context.Background(), Request{Code: "x", Limits: l})
		if err != nil || res.ErrorType != core.ErrTimeout {
			t.Fatalf("err = %v, result %s %q", err, res.ErrorType, res.ErrorMessage)
		}
	})
	t.Run("wall limit: nsjail ignores SIGTERM", func(t *testing.T) {
		// The fallback SIGKILLs the supervisor after killGrace.
		j, _ := newFakeNsjail(t, `trap '' TERM; while :; do sleep 0.05; done`)
		l := lim
		l.Wall = 200 * time.Millisecond
		res, err := j.Run(context.Background(), Request{Code: "x", Limits: l})
		if err != nil || res.ErrorType != core.ErrTimeout {
			t.Fatalf("err = %v, result %s %q", err, res.ErrorType, res.ErrorMessage)
		}
	})
}

func TestNewNsjailErrors(t *testing.T) {
	_, err := New(BackendNsjail, Config{NsjailPath: "/nonexistent/nsjail"})
	if !errors.Is(err, ErrNoJail) || !strings.Contains(err.Error(), "install nsjail") {
		t.Errorf("New(nsjail) without the binary: %v", err)
	}
	if os.Geteuid() == 0 {
		bin, _ := fakeNsjail(t, "exit 0")
		_, err = New(BackendNsjail, Config{NsjailPath: bin, NsjailConfig: "/nonexistent/python.cfg"})
		if err == nil || !strings.Contains(err.Error(), "nsjail config") {
			t.Errorf("New(nsjail) with a missing policy: %v", err)
		}
		bad := filepath.Join(t.TempDir(), "bad.cfg")
		os.WriteFile(bad, []byte("mode: ONCE\nclone_newnet: false\n"), 0o644)
		_, err = New(BackendNsjail, Config{NsjailPath: bin, NsjailConfig: bad})
		if err == nil || !strings.Contains(err.Error(), "clone_newnet") {
			t.Errorf("New(nsjail) with an unsafe policy: %v", err)
		}
	}
}

// TestNsjailRunConfig: a run's configuration is the policy as checked,
// unchanged, and the program as one more read-only mount of content.
func TestNsjailRunConfig(t *testing.T) {
	_, path := shippedPolicy(t)
	pol, err := loadNsjailPolicy(path)
	if err != nil {
		t.Fatal(err)
	}
	code := "print(\"hi\")\nmount { dst: \"/etc\" src: \"/etc\" is_bind: true }\n# ü\n"
	conf := nsjailRunConfig(pol.text, code)
	if !strings.HasPrefix(conf, pol.text) {
		t.Error("the run's configuration does not start with the policy")
	}
	m, err := parsePBText(conf)
	if err != nil {
		t.Fatal(err)
	}
	if _, problems := checkNsjailPolicy(m); len(problems) > 0 {
		t.Errorf("the run's configuration fails the policy check: %v", problems)
	}
	mounts := m.Messages("mount")
	last := mounts[len(mounts)-1]
	if dst, _ := last.Scalar("dst"); dst != "/sandbox/main.py" {
		t.Errorf("last mount dst = %q", dst)
	}
	if got, _ := last.Scalar("src_content"); got != code {
		t.Errorf("src_content = %q, want the program", got)
	}
	if rw, _ := last.Scalar("rw"); rw != "false" {
		t.Errorf("the program's mount rw = %q", rw)
	}
	for _, mp := range mounts {
		if dst, _ := mp.Scalar("dst"); dst == "/etc" {
			t.Error("the program's text became a mount")
		}
	}
	// nsjail takes an empty src_content for none: an empty program is a
	// newline.
	m, _ = parsePBText(nsjailRunConfig(pol.text, ""))
	mounts = m.Messages("mount")
	if got, _ := mounts[len(mounts)-1].Scalar("src_content"); got != "\n" {
		t.Errorf("empty program: src_content = %q", got)
	}
}
