package sandbox

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
)

// nsjail exit statuses (mode ONCE): the program's status, 128+N when it was
// killed by signal N (137 = SIGKILL: the time limit, the cgroup OOM killer
// and an outside kill alike, so the parent measures time itself), and 255
// when nsjail itself failed.
const nsjailLaunchFailed = 255

// cgroupV2Mount is where nsjail looks for the cgroup v2 hierarchy.
const cgroupV2Mount = "/sys/fs/cgroup"

// nsjailJail runs programs under nsjail with the policy file; see
// configs/nsjail/python.cfg.
//
// Layout of one run (the parent is root):
//
//	Go parent (root)
//	└─ nsjail (supervisor), root: vforked from a thread of the parent that
//	   keeps a network namespace with no interface up, reused from an
//	   earlier jail that is gone (see netnsThread); nsjail creates no
//	   network namespace of its own (--disable_clone_newnet)
//	   └─ python3 -I -S -u /sandbox/main.py: pid 1 of a new pid namespace,
//	      uid 65534 inside and outside, in a user namespace nsjail created
//
// nsjail reads its configuration from fd 4, a memfd holding one mount: the
// program, as a file nsjail writes into the jail's own tmpfs (src_content)
// and binds read-only at /sandbox/main.py. The policy file, as checked at
// start, follows as command-line options (nsjail_flags.go), or, when one of
// its fields has no option of the same meaning, its text comes first in
// that configuration. Nothing is written to the host's disk per run.
// Without CAP_SYS_ADMIN (no threads in network namespaces of their own)
// nsjail creates each jail's network namespace, as the policy file says
// when run by hand.
type nsjailJail struct {
	nsjail string
	policy nsjailPolicy
	interp interpreter
	cg     cgroupSupport
	// netns, when set, provides network namespaces to start jails in.
	netns *netnsPool
}

// nsjailPolicy is what the parent needs to know about the policy file.
type nsjailPolicy struct {
	path string
	// text is the file's content as read and checked at start; every run
	// gets this copy, so an edit of the file takes effect at the next
	// start, after it has been checked.
	text string
	// hasIDMaps: the file maps uid and gid 65534 itself, so the command
	// line must not add --user/--group (nsjail appends them to the file's
	// entries and the duplicated mapping fails).
	hasIDMaps bool
	// user and group are the jail's uid and gid as nsjail is given them:
	// their names in the host's files where known (see nsjail_ids.go),
	// the numbers otherwise. text uses them too.
	user, group string
	// tmpfsBytes is the size of the file's /tmp tmpfs, 0 when unknown.
	tmpfsBytes int64
	// tmpfsInodes is its nr_inodes= option, 0 when unknown.
	tmpfsInodes int64
	// msg is the file as parsed.
	msg *pbMessage
	// flags is the policy as nsjail's options (nsjail_flags.go), nil when
	// a field has none of the same meaning: each run's configuration then
	// holds the whole text.
	flags []string
}

func newNsjail(cfg Config) (Jail, error) {
	bin, err := lookPath(cfg.NsjailPath, "nsjail")
	if err != nil {
		return nil, fmt.Errorf("%w: nsjail not found (%v): install nsjail (built from https://github.com/google/nsjail, as Dockerfile.sandbox does), "+
			"set its path, or use the bwrap backend on a development machine", ErrNoJail, err)
	}
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("sandbox: the nsjail backend must run as root: it maps the jail to uid %d outside (use the bwrap backend otherwise)", jailUID)
	}
	// Program files a crashed runtime left where runtimes write them by
	// default (nsjail_rundir.go).
	removeStaleRunDirs(os.TempDir())
	path, err := FindNsjailConfig(cfg.NsjailConfig)
	if err != nil {
		return nil, err
	}
	pol, err := loadNsjailPolicy(path)
	if err != nil {
		return nil, err
	}
	pol.useIDNames(hostIDNames("/etc/passwd", "/etc/group", jailUID))
	pol.flags, _ = policyFlags(pol.msg, pol.user, pol.group, pathExists)
	py, err := resolveInterpreter(cfg.PythonPath)
	if err != nil {
		return nil, err
	}
	n := &nsjailJail{nsjail: bin, policy: pol, interp: py, cg: detectCgroups(cfg.Cgroups, cgroupV2Mount)}
	if t, err := newNetnsThread(false); err == nil {
		n.netns = &netnsPool{maxIdle: max(8, 2*runtime.NumCPU())}
		n.netns.put(t)
	}
	return &jail{name: BackendNsjail, l: n}, nil
}

// useIDNames makes the policy give nsjail the jail's ids by those names,
// when ok and the text can be rewritten so.
func (p *nsjailPolicy) useIDNames(names idNames, ok bool) {
	if !ok {
		return
	}
	if p.hasIDMaps {
		text, ok := withIDNames(p.text, jailUID, names)
		if !ok {
			return
		}
		p.text = text
	}
	p.user, p.group = names.user, names.group
}

// loadNsjailPolicy reads and checks the policy file.
func loadNsjailPolicy(path string) (nsjailPolicy, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nsjailPolicy{}, fmt.Errorf("sandbox: nsjail config: %w", err)
	}
	m, err := parsePBText(string(data))
	if err != nil {
		return nsjailPolicy{}, fmt.Errorf("sandbox: nsjail config %s: %w", path, err)
	}
	pol, problems := checkNsjailPolicy(m)
	if len(problems) > 0 {
		return nsjailPolicy{}, fmt.Errorf("sandbox: nsjail config %s is not a safe policy: %s", path, strings.Join(problems, "; "))
	}
	pol.path, pol.text, pol.msg = path, string(data), m
	pol.user, pol.group = strconv.Itoa(jailUID), strconv.Itoa(jailUID)
	return pol, nil
}

// checkNsjailPolicy verifies the properties the jail promises that live in
// the policy file, and returns what the command line must complement.
// Limits themselves are always passed on the command line, so their values
// here are only fallbacks; they must still be set explicitly (nsjail's
// defaults: time_limit 600 s, rlimit_fsize 1 MB, rlimit_nproc = the
// caller's soft limit).
func checkNsjailPolicy(m *pbMessage) (nsjailPolicy, []string) {
	var pol nsjailPolicy
	var problems []string
	want := func(field, value string) {
		if v, ok := m.Scalar(field); !ok || v != value {
			problems = append(problems, fmt.Sprintf("%s must be %s", field, value))
		}
	}
	notFalse := func(field string) { // fields whose default is true
		if v, ok := m.Scalar(field); ok && v != "true" {
			problems = append(problems, fmt.Sprintf("%s must not be %s", field, v))
		}
	}
	want("mode", "ONCE")
	want("iface_no_lo", "true")
	for _, f := range []string{"clone_newnet", "clone_newuser", "clone_newns", "clone_newpid", "clone_newipc", "clone_newuts"} {
		notFalse(f)
	}
	for _, f := range []string{"keep_env", "keep_caps", "disable_no_new_privs", "mount_proc", "is_root_rw"} {
		if v, ok := m.Scalar(f); ok && v != "false" {
			problems = append(problems, fmt.Sprintf("%s must be false", f))
		}
	}
	if _, ok := m.Scalar("chroot_dir"); ok {
		problems = append(problems, "chroot_dir must not be set: the root is an empty tmpfs with read-only binds")
	}
	if _, ok := m.Scalar("macvlan_iface"); ok || len(m.All("iface_own")) > 0 {
		problems = append(problems, "no network interface may be given to the jail")
	}
	if _, ok := m.Scalar("time_limit"); !ok {
		problems = append(problems, "time_limit must be set")
	}
	for _, f := range []string{"rlimit_as", "rlimit_cpu", "rlimit_fsize", "rlimit_nofile", "rlimit_nproc"} {
		if _, ok := m.Scalar(f); !ok {
			problems = append(problems, f+" must be set")
		}
		if v, ok := m.Scalar(f + "_type"); ok && v != "VALUE" {
			problems = append(problems, f+"_type must be VALUE")
		}
	}
	// rlimit_nproc_type defaults to SOFT, which ignores rlimit_nproc.
	want("rlimit_nproc_type", "VALUE")
	// The system-call filter (seccomp.go says what it denies and why).
	if len(m.All("seccomp_string")) == 0 {
		problems = append(problems, "seccomp_string must hold the system-call filter")
	}
	if _, ok := m.Scalar("seccomp_policy_file"); ok {
		problems = append(problems, "seccomp_policy_file must not be set: the filter is the file's seccomp_string")
	}

	uids, gids := m.Messages("uidmap"), m.Messages("gidmap")
	switch {
	case len(uids) == 0 && len(gids) == 0:
		// The command line adds --user/--group 65534:65534.
	case len(uids) == 1 && len(gids) == 1 && idMapIs(uids[0], jailUID) && idMapIs(gids[0], jailUID):
		pol.hasIDMaps = true
	default:
		problems = append(problems, fmt.Sprintf("uidmap and gidmap must each be exactly one mapping of %d inside to %d outside (or both absent)", jailUID, jailUID))
	}

	for _, mp := range m.Messages("mount") {
		dst, _ := mp.Scalar("dst")
		src, _ := mp.Scalar("src")
		rw, _ := mp.Scalar("rw")
		fstype, _ := mp.Scalar("fstype")
		switch {
		case dst == "/proc" || fstype == "proc":
			problems = append(problems, "no /proc may be mounted")
		case under(src, "/etc") || dst == "/etc":
			problems = append(problems, "nothing of the host's /etc may be mounted")
		case rw == "true" && fstype != "tmpfs" && src != "/dev/null":
			problems = append(problems, fmt.Sprintf("mount %s must be read-only", dst))
		case fstype == "tmpfs" && rw == "true" && tmpfsSize(mp) == 0:
			problems = append(problems, fmt.Sprintf("tmpfs %s needs a size= option", dst))
		case fstype == "tmpfs" && rw == "true" && tmpfsOption(mp, "nr_inodes") <= 0:
			problems = append(problems, fmt.Sprintf("tmpfs %s needs an nr_inodes= option", dst))
		}
		if dst == "/tmp" && fstype == "tmpfs" {
			pol.tmpfsBytes = tmpfsSize(mp)
			pol.tmpfsInodes = tmpfsOption(mp, "nr_inodes")
		}
	}
	return pol, problems
}

func idMapIs(m *pbMessage, id int) bool {
	in, _ := m.Scalar("inside_id")
	out, _ := m.Scalar("outside_id")
	cnt, ok := m.Scalar("count")
	want := strconv.Itoa(id)
	return in == want && out == want && (!ok || cnt == "1")
}

// tmpfsSize returns the size= option of a mount in bytes, 0 if absent.
func tmpfsSize(m *pbMessage) int64 { return tmpfsOption(m, "size") }

// tmpfsOption returns a numeric option of a mount, 0 if absent.
func tmpfsOption(m *pbMessage, name string) int64 {
	opts, _ := m.Scalar("options")
	for _, o := range strings.Split(opts, ",") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(o), name+"="); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err == nil {
				return n
			}
		}
	}
	return 0
}

// nsjailConfigFD is the descriptor nsjail reads its configuration from:
// the policy and the program (childFiles[0]; fd 3 is the log).
const nsjailConfigFD = 4

// command hands nsjail its configuration, the program included, in a memfd
// (see nsjailJail) and starts it from a thread in a reused network
// namespace when there is one.
func (n *nsjailJail) command(lim Limits, code string, spec runSpec, runID string) (*launch, error) {
	conf, err := memfdWith("adp-program", n.policy.runConfig(code))
	if err != nil {
		return nil, fmt.Errorf("sandbox: passing the program to the jail: %w", err)
	}
	var thread *netnsThread
	if n.netns != nil {
		if thread, err = n.netns.get(); err != nil {
			conf.Close()
			return nil, err
		}
	}
	if spec.image != nil && n.policy.flags == nil {
		conf.Close()
		if thread != nil {
			n.netns.put(thread)
		}
		return nil, fmt.Errorf("sandbox: nsjail policy %s has a field without a command-line option, so its host root cannot be replaced by an image", n.policy.path)
	}
	argv := nsjailArgs(n.nsjail, n.policy, n.cg, lim, spec, runID, thread != nil)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = []string{"PATH=/usr/bin:/bin"}
	cmd.Dir = "/"
	// No user namespace for Go to create: the fork is a vfork.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	ln := &launch{
		cmd:        cmd,
		childFiles: []*os.File{conf},
		done: func(supervisorExited bool) {
			if thread == nil {
				return
			}
			if supervisorExited {
				// nsjail has reaped the pid namespace's init: every
				// process of the jail is gone.
				n.netns.put(thread)
			} else {
				// The jail may still be dying: never share its namespace.
				thread.retire()
			}
		},
	}
	if thread != nil {
		ln.spawn = thread.do
	}
	return ln, nil
}

// runConfig is one run's configuration: the program, after the policy's
// text unless the policy is given as options.
func (p *nsjailPolicy) runConfig(code string) string {
	if p.flags != nil {
		return nsjailRunConfig("", code)
	}
	return nsjailRunConfig(p.text, code)
}

// nsjailRunConfig is one run's configuration: the policy, then the
// program as a read-only file of the jail's own tmpfs. An empty program
// becomes a newline (nsjail takes an empty src_content for no content).
func nsjailRunConfig(policy, code string) string {
	if code == "" {
		code = "\n"
	}
	return policy + "\n# The program of this run (added by the sandbox runtime).\nmount {\n  dst: \"" + jailCodeDir + "/" + scriptName + "\"\n  src_content: " +
		pbQuote(code) + "\n  rw: false\n}\n"
}

// nsjailArgs is nsjail's command line: the configuration (from fd 4), then
// the per-run values, which override the file's. netnsGiven: the jail is
// started in a network namespace of the parent's, so nsjail creates none.
func nsjailArgs(bin string, pol nsjailPolicy, cg cgroupSupport, lim Limits, spec runSpec, runID string, netnsGiven bool) []string {
	wallSeconds := int64((lim.Wall + 999_999_999) / 1_000_000_000)
	a := []string{bin, "--config", "/proc/self/fd/" + strconv.Itoa(nsjailConfigFD)}
	// The policy's options, when it is not in the configuration: after
	// --config, which replaces every option before it. On an image, less
	// the host's root, environment and ids (the image's follow).
	if spec.image != nil {
		a = append(a, imagePolicyFlags(pol.flags)...)
	} else {
		a = append(a, pol.flags...)
	}
	a = append(a,
		"--log_fd", "3",
		// A backstop: the parent kills the jail at lim.Wall itself.
		"--time_limit", strconv.FormatInt(wallSeconds+1, 10),
		"--rlimit_as", rlimitAS(cg, lim),
		// The hard limit, as under bwrap (whose soft limit nsjail cannot
		// set apart): SIGKILL one second past Limits.CPU.
		"--rlimit_cpu", strconv.FormatInt(cpuSeconds(lim.cpuTime())+1, 10),
		"--rlimit_fsize", strconv.FormatInt(ceilMiB(lim.MaxFileBytes), 10),
		"--rlimit_nofile", strconv.Itoa(lim.MaxOpenFiles),
		// Processes plus threads. The jailed interpreter is pid 1 of its
		// namespace; nsjail itself (root) does not count.
		"--rlimit_nproc", strconv.Itoa(lim.MaxThreads),
		"--rlimit_core", "0",
	)
	if netnsGiven {
		a = append(a, "--disable_clone_newnet")
	}
	if img := spec.image; img != nil {
		// The image's user inside, 65534 outside.
		a = append(a,
			"--user", strconv.Itoa(img.uid)+":"+strconv.Itoa(jailUID)+":1",
			"--group", strconv.Itoa(img.gid)+":"+strconv.Itoa(jailUID)+":1")
		for _, kv := range img.env {
			a = append(a, "--env", kv)
		}
		for _, e := range img.entries {
			if e.target != "" {
				a = append(a, "--symlink", e.target+":"+e.path)
			} else {
				a = append(a, "--bindmount_ro", img.root+e.path+":"+e.path)
			}
		}
	} else if !pol.hasIDMaps {
		// inside:outside: a bare "65534" would map to root outside, where
		// RLIMIT_NPROC is not enforced.
		user, group := pol.user, pol.group
		if user == "" || group == "" {
			user, group = strconv.Itoa(jailUID), strconv.Itoa(jailUID)
		}
		a = append(a, "--user", user+":"+user, "--group", group+":"+group)
	}
	a = append(a, "--env", runIDEnv+"="+runID)
	if spec.pythonPrefix != "" {
		a = append(a, "--bindmount_ro", spec.pythonPrefix+":"+spec.pythonPrefix)
	}
	for _, b := range spec.binds {
		if b.Writable {
			a = append(a, "--bindmount", b.Host+":"+b.Jail)
		} else {
			a = append(a, "--bindmount_ro", b.Host+":"+b.Jail)
		}
	}
	if spec.dir != defaultJailDir {
		a = append(a, "--cwd", spec.dir)
	}
	if inodes := tmpfsInodes(lim.TmpfsBytes); lim.TmpfsBytes != pol.tmpfsBytes || inodes != pol.tmpfsInodes {
		a = append(a, "--mount", "none:/tmp:tmpfs:size="+strconv.FormatInt(lim.TmpfsBytes, 10)+",nr_inodes="+strconv.FormatInt(inodes, 10))
	}
	a = append(a, nsjailCgroupArgs(cg, lim)...)
	a = append(a, "--")
	return append(a, spec.argv...)
}

// nsjailCgroupArgs are the options that put the jail in cgroups of its
// own (cgroup.go), none without.
func nsjailCgroupArgs(cg cgroupSupport, lim Limits) []string {
	var a []string
	if !cg.v1 && cg.any() {
		a = append(a, "--use_cgroupv2", "--cgroupv2_mount", cgroupV2Mount)
	}
	if cg.memory {
		// tmpfs pages are charged to the cgroup of the writer.
		a = append(a, "--cgroup_mem_max", strconv.FormatInt(lim.MemoryBytes+lim.TmpfsBytes, 10))
		if cg.v1 {
			a = append(a, "--cgroup_mem_mount", filepath.Dir(cg.memoryRoot), "--cgroup_mem_parent", cgroupV1Parent)
		}
	}
	if cg.pids {
		a = append(a, "--cgroup_pids_max", strconv.Itoa(lim.MaxThreads))
		if cg.v1 {
			a = append(a, "--cgroup_pids_mount", filepath.Dir(cg.pidsRoot), "--cgroup_pids_parent", cgroupV1Parent)
		}
	}
	return a
}

func (n *nsjailJail) interpreter() interpreter { return n.interp }

// owner: the policy maps the jail to 65534 outside.
func (n *nsjailJail) owner() (int, int) { return jailUID, jailUID }

// stop asks nsjail to end the jail: on SIGTERM it SIGKILLs its child (the
// pid namespace's init, so the whole jail) and reaps it. The parent's
// fallback SIGKILLs nsjail itself after killGrace; the jail then dies of
// its parent-death signal.
func (n *nsjailJail) stop(r *running) {
	_ = r.cmd.Process.Signal(syscall.SIGTERM)
}

// launchFailure: nsjail exits 255 when it failed, and says why on its log
// fd as "[E]" or "[F]" lines. A program's own sys.exit(255) leaves no such
// line and stays a program failure.
func (n *nsjailJail) launchFailure(o outcome, _ string, aux []byte) (string, bool) {
	if o.exitCode != nsjailLaunchFailed || o.signal != 0 {
		return "", false
	}
	var msgs []string
	for _, line := range bytes.Split(aux, []byte("\n")) {
		if bytes.HasPrefix(line, []byte("[E]")) || bytes.HasPrefix(line, []byte("[F]")) {
			msgs = append(msgs, string(bytes.TrimSpace(line)))
		}
	}
	if len(msgs) == 0 {
		return "", false
	}
	return strings.Join(msgs, " | "), true
}

func (n *nsjailJail) memoryKill() bool { return n.cg.memory }

// imagePolicyFlags is the policy's options for a run on an image: its
// binds of the host's root (/usr, /bin, /lib...), environment and id maps
// left out, its /dev binds, tmpfs and everything else kept.
func imagePolicyFlags(flags []string) []string {
	switches := map[string]bool{"--disable_proc": true}
	for _, sw := range fieldSwitches {
		switches[sw.flag] = true
	}
	var out []string
	for i := 0; i < len(flags); i++ {
		f := flags[i]
		if switches[f] || i+1 == len(flags) {
			out = append(out, f)
			continue
		}
		v := flags[i+1]
		i++
		switch f {
		case "--env", "--user", "--group":
			continue
		case "--bindmount_ro", "--bindmount":
			src, dst, ok := strings.Cut(v, ":")
			if !ok {
				dst = src
			}
			if !under(dst, "/dev") {
				continue
			}
		}
		out = append(out, f, v)
	}
	return out
}
