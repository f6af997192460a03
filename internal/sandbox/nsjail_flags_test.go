package sandbox

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
)

// TestPolicyFlagsShipped: the shipped policy translates whole, every field
// in file order, the jail's ids by the names it is given.
func TestPolicyFlagsShipped(t *testing.T) {
	m, path := shippedPolicy(t)
	flags, why := policyFlags(m, "nobody", "nogroup", func(string) bool { return true })
	if flags == nil {
		t.Fatalf("%s does not translate to options: %s", path, why)
	}
	for _, want := range [][]string{
		{"--mode=o"}, {"--hostname", "sandbox"}, {"--cwd", "/tmp"}, {"--nice_level", "0"}, {"--quiet"},
		{"--env", "PATH=/usr/bin:/bin"}, {"--env", "HOME=/tmp"},
		{"--user", "nobody:nobody:1"}, {"--group", "nogroup:nogroup:1"}, {"--iface_no_lo"},
		{"--rlimit_as", "1024"}, {"--rlimit_nproc", "256"}, {"--rlimit_core", "0"},
		{"--bindmount_ro", "/usr:/usr"}, {"--bindmount_ro", "/lib64:/lib64"},
		{"--mount", "none:/tmp:tmpfs:size=67108864,nr_inodes=4096"},
		{"--bindmount", "/dev/null:/dev/null"}, {"--bindmount_ro", "/dev/urandom:/dev/urandom"},
		{"--disable_proc"},
	} {
		if !containsRun(flags, want) {
			t.Errorf("options lack %q", want)
		}
	}
	var seccomp []string
	for _, f := range m.All("seccomp_string") {
		seccomp = append(seccomp, f.Value)
	}
	if got := flagValues(flags, "--seccomp_string"); !slices.Equal(got, seccomp) {
		t.Errorf("--seccomp_string values differ from the file's lines:\n got %q\nwant %q", got, seccomp)
	}
	// File order: /usr is mounted before /tmp, as in the file.
	if slices.Index(flags, "/usr:/usr") > slices.Index(flags, "none:/tmp:tmpfs:size=67108864,nr_inodes=4096") {
		t.Error("mounts out of the file's order")
	}
	// A mount that is not mandatory is left out when its source is missing.
	flags, _ = policyFlags(m, "nobody", "nogroup", func(p string) bool { return p != "/lib64" })
	if slices.Contains(flags, "/lib64:/lib64") {
		t.Error("/lib64 given although missing and not mandatory")
	}
	if !slices.Contains(flags, "/usr:/usr") {
		t.Error("/usr left out")
	}
}

// TestPolicyFlagsFallBack: a field with no option of the same meaning
// keeps the whole file in each run's configuration (nil options), and the
// reason names it.
func TestPolicyFlagsFallBack(t *testing.T) {
	for _, tc := range []struct{ text, field string }{
		{"cgroup_mem_max: 100\n", "cgroup_mem_max"},
		{"log_level: ERROR\n", "log_level"},
		{"mode: LISTEN\n", "mode"},
		{"rlimit_as: 10\nrlimit_as_type: SOFT\n", "rlimit_as_type"},
		{"rlimit_memlock: 10\n", "rlimit_memlock"},
		{"keep_env: true\n", "keep_env"},
		{"clone_newnet: false\n", "clone_newnet"},
		{"mount_proc: true\n", "mount_proc"},
		{"seccomp_log: true\n", "seccomp_log"},
		{"mount { dst: \"/x\" src_content: \"a\" }\n", "mount"},
		{"mount { src: \"/a:b\" dst: \"/a\" is_bind: true }\n", "mount"},
		{"mount { src: \"/opt\" dst: \"/sandbox/lib\" is_bind: true }\n", "mount"},
		{"mount { src: \"/opt\" dst: \"/\" is_bind: true }\n", "mount"},
		{"mount { src: \"/opt\" dst: \"/opt\" is_bind: true noexec: true }\n", "mount"},
		{"mount { dst: \"/tmp\" fstype: \"tmpfs\" rw: false }\n", "mount"},
		{"mount { dst: \"/p\" fstype: \"proc\" rw: true }\n", "mount"},
		{"uidmap { inside_id: \"65534\" outside_id: \"65534\" use_newidmap: true }\n", "uidmap"},
		{"uidmap { inside_id: \"0\" outside_id: \"65534\" }\n", "uidmap"},
	} {
		m, err := parsePBText("hostname: \"h\"\n" + tc.text)
		if err != nil {
			t.Fatalf("%q: %v", tc.text, err)
		}
		flags, why := policyFlags(m, "nobody", "nogroup", func(string) bool { return true })
		if flags != nil {
			t.Errorf("%q: translated to %q; want the file kept", tc.text, flags)
			continue
		}
		if !strings.HasPrefix(why, tc.field+" (line ") {
			t.Errorf("%q: reason %q, want it to name %s", tc.text, why, tc.field)
		}
	}
}

// TestNsjailPolicyAsOptionsSameJail runs one program that prints what a jail
// is (ids, host name, directory, environment, limits, the file tree, what
// the system-call filter and the read-only mounts refuse, the network) under
// the shipped policy given to nsjail as options and as the file: both must
// print the same.
func TestNsjailPolicyAsOptionsSameJail(t *testing.T) {
	j, err := New(BackendNsjail, Config{})
	if errors.Is(err, ErrNoJail) {
		t.Skipf("nsjail not installed: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	withFlags := j.(*jail).l.(*nsjailJail)
	if withFlags.policy.flags == nil {
		t.Fatal("the shipped policy is not given as options")
	}
	fileOnly := *withFlags
	fileOnly.policy.flags = nil
	asFile := &jail{name: BackendNsjail, l: &fileOnly}

	const probe = `import os, resource, socket, errno
print(os.getuid(), os.getgid(), os.getgroups(), socket.gethostname(), os.getcwd())
print(sorted((k, v) for k, v in os.environ.items() if k != "SANDBOX_RUN_ID"))
for r in ("RLIMIT_AS", "RLIMIT_CPU", "RLIMIT_FSIZE", "RLIMIT_NOFILE", "RLIMIT_NPROC", "RLIMIT_CORE", "RLIMIT_STACK"):
    print(r, resource.getrlimit(getattr(resource, r)))
print(sorted(os.listdir("/")), sorted(os.listdir("/dev")), os.path.exists("/proc/self"))
print(os.statvfs("/tmp").f_blocks * os.statvfs("/tmp").f_frsize, os.statvfs("/tmp").f_files)
def tries(f):
    try:
        f()
        return "ok"
    except OSError as e:
        return errno.errorcode.get(e.errno, e.errno)
print("netlink", tries(lambda: socket.socket(socket.AF_NETLINK, socket.SOCK_RAW)))
print("usr", tries(lambda: open("/usr/adp-probe", "w")))
print("devnull", tries(lambda: open("/dev/null", "w").write("x")))
print("tmp", tries(lambda: open("/tmp/x", "w").write("x")))
print("ifaces", tries(socket.if_nameindex))
print("connect", tries(lambda: socket.create_connection(("127.0.0.1", 9), timeout=1)))
print("nice", os.nice(0))
`
	lim := testLimits()
	var outs []string
	for _, jl := range []Jail{j, asFile} {
		res, err := jl.Run(context.Background(), Request{Code: probe, Limits: lim})
		if err != nil {
			t.Fatal(err)
		}
		if !res.OK() {
			t.Fatalf("probe failed: exit %d: %s", res.ExitCode, res.Stderr)
		}
		outs = append(outs, res.Stdout)
	}
	if outs[0] != outs[1] {
		t.Errorf("the jail differs:\nas options:\n%s\nas the file:\n%s", outs[0], outs[1])
	}
	for _, want := range []string{"65534 65534", "netlink EPERM", "usr EROFS", "devnull ok", "tmp ok", "False"} {
		if !strings.Contains(outs[0], want) {
			t.Errorf("probe output lacks %q:\n%s", want, outs[0])
		}
	}
}

// containsRun reports whether want occurs in a as consecutive elements.
func containsRun(a, want []string) bool {
	for i := 0; i+len(want) <= len(a); i++ {
		if slices.Equal(a[i:i+len(want)], want) {
			return true
		}
	}
	return false
}

// TestNsjailPolicyOptionsOrder: the policy's options come right after
// --config (which would replace any option before it) and before the run's
// own, which override them; the run's configuration then holds only the
// program.
func TestNsjailPolicyOptionsOrder(t *testing.T) {
	pol := nsjailPolicy{text: "hostname: \"h\"\n", hasIDMaps: true, flags: []string{"--hostname", "h", "--time_limit", "99"}}
	lim := DefaultLimits()
	argv := nsjailArgs("nsjail", pol, cgroupSupport{}, lim, mustSpec(t, Request{}, interpreter{path: DefaultPythonPath}), "x", true)
	if !slices.Equal(argv[1:7], []string{"--config", "/proc/self/fd/4", "--hostname", "h", "--time_limit", "99"}) {
		t.Errorf("argv starts %q: want --config, then the policy's options", argv[:7])
	}
	if got := flagValues(argv, "--time_limit"); len(got) != 2 || got[0] != "99" || got[1] == "99" {
		t.Errorf("--time_limit values %q: the run's own must follow the policy's", got)
	}
	m, err := parsePBText(pol.runConfig("print(1)\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Fields) != 1 || m.Fields[0].Name != "mount" {
		t.Fatalf("the run's configuration holds %d fields (%v); want only the program's mount", len(m.Fields), m.Fields)
	}
	if got, _ := m.Fields[0].Msg.Scalar("src_content"); got != "print(1)\n" {
		t.Errorf("src_content = %q", got)
	}
	pol.flags = nil
	if conf := pol.runConfig("print(1)\n"); !strings.HasPrefix(conf, pol.text) {
		t.Errorf("without options the configuration must start with the policy's text: %q", conf)
	}
}
