package sandbox

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// Image is a root file system for the jail: an OCI image unpacked by
// internal/imagestore (Handle.Root and Handle.Config). With an Image the
// jail's / is the image's root, read-only, instead of the host's /usr:
// every top-level entry of the root is bound read-only (a directory or a
// file) or made the same symlink on the jail's own tmpfs root, except
// the jail's own /tmp, /dev, /proc, /sys and /sandbox, and the request's
// Binds, which replace the image's entry of the same name. Everything else
// is as without an image: namespaces, no network, no new privileges, the
// seccomp filter, every limit; the jail's uid is 65534 outside whatever
// the image's user is inside.
type Image struct {
	// Root is the host directory holding the image's root. It and its
	// parents must be searchable by the jail's uid (the store's are).
	Root string
	// Env is the image's environment ("KEY=value"), merged with the
	// jail's (see imageEnv).
	Env []string
	// WorkingDir is the image's working directory: a run's default
	// directory. Empty: /tmp, as without an image.
	WorkingDir string
	// User is the image's user: "", "root", a name of the image's
	// /etc/passwd, or uid[:gid] (numbers or names). The jail maps it to
	// its unprivileged uid outside.
	User string
	// Writable binds the root's top-level entries read-write instead of
	// read-only: Root is then a copy-on-write view the caller made and
	// bounds (the workspace package's overlay, whose upper layer is in
	// the workspace's capped tmpfs), never the image store's own tree.
	// The jail's / itself stays read-only: a new top-level entry cannot
	// be made.
	Writable bool
}

// imageReserved are the jail's own top-level entries, never taken from an
// image.
var imageReserved = map[string]bool{"/tmp": true, "/dev": true, "/proc": true, "/sys": true, jailCodeDir: true}

// fixedEnv are the variables an image cannot set: the run id (the
// runtime's), TMPDIR (the jail's only scratch space) and MALLOC_ARENA_MAX
// (it keeps threads within RLIMIT_AS; see policyEnv).
var fixedEnv = map[string]bool{runIDEnv: true, "TMPDIR": true, "MALLOC_ARENA_MAX": true}

// imageSpec is what a run on an image root needs.
type imageSpec struct {
	root     string
	writable bool        // Image.Writable
	entries  []rootEntry // the image's top-level entries to bind or link
	uid, gid int         // the image's user, inside the jail
	env      []string    // the whole environment, the run id excepted
}

// imageEnv is a run's environment on an image: the jail's fixed variables
// (policyEnv), each one the image also sets taking the image's value
// (PATH, HOME, LANG...), then the image's others in its order; the run id
// and fixedEnv stay the jail's. The run id is added by the backends.
func imageEnv(img []string) []string {
	vals := map[string]string{}
	var order []string
	for _, kv := range policyEnv {
		k, v, _ := strings.Cut(kv, "=")
		vals[k] = v
		order = append(order, k)
	}
	for _, kv := range img {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" || fixedEnv[k] || strings.IndexByte(kv, 0) >= 0 {
			continue
		}
		if _, seen := vals[k]; !seen {
			order = append(order, k)
		}
		vals[k] = v
	}
	out := make([]string, 0, len(order))
	for _, k := range order {
		out = append(out, k+"="+vals[k])
	}
	return out
}

// envValue returns the value of key in env.
func envValue(env []string, key string) string {
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, key+"="); ok {
			return v
		}
	}
	return ""
}

// specImage checks an image and reads what a run on it needs: its
// top-level entries, its user's ids, its environment.
func specImage(img *Image, binds []Bind) (*imageSpec, error) {
	if !path.IsAbs(img.Root) || path.Clean(img.Root) != img.Root || strings.ContainsAny(img.Root, ":,\x00\n") {
		return nil, fmt.Errorf("sandbox: image root %q must be a clean absolute path without ':' or ','", img.Root)
	}
	st, err := os.Lstat(img.Root)
	if err != nil {
		return nil, fmt.Errorf("sandbox: image root: %w", err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("sandbox: image root %s is not a directory", img.Root)
	}
	if err := traversableByOthers(img.Root); err != nil {
		return nil, fmt.Errorf("sandbox: image root: %w", err)
	}
	covered := map[string]bool{}
	for _, b := range binds {
		covered[b.Jail] = true // a nested bind covers nothing at the top
	}
	des, err := os.ReadDir(img.Root)
	if err != nil {
		return nil, fmt.Errorf("sandbox: image root: %w", err)
	}
	s := &imageSpec{root: img.Root, writable: img.Writable, env: imageEnv(img.Env)}
	for _, de := range des {
		p := "/" + de.Name()
		if imageReserved[p] || covered[p] {
			continue
		}
		if strings.ContainsAny(de.Name(), ":,\n") {
			return nil, fmt.Errorf("sandbox: image root %s: top-level entry %q: ':' and ',' cannot be bound", img.Root, de.Name())
		}
		switch {
		case de.Type()&os.ModeSymlink != 0:
			target, err := os.Readlink(img.Root + p)
			if err != nil {
				return nil, fmt.Errorf("sandbox: image root: %w", err)
			}
			if strings.ContainsAny(target, ":\x00\n") {
				return nil, fmt.Errorf("sandbox: image root %s: symlink %s -> %q: ':' cannot be given to the jail", img.Root, p, target)
			}
			s.entries = append(s.entries, rootEntry{path: p, target: target})
		case de.IsDir(), de.Type().IsRegular():
			s.entries = append(s.entries, rootEntry{path: p})
		}
	}
	sort.Slice(s.entries, func(i, j int) bool { return s.entries[i].path < s.entries[j].path })
	s.uid, s.gid, err = imageUser(img.Root, img.User)
	if err != nil {
		return nil, err
	}
	return s, nil
}

// imageUser resolves an image's User to ids inside the jail: numbers as
// they are, names through the image's own /etc/passwd and /etc/group
// (read without leaving the root). The empty user is root.
func imageUser(root, user string) (uid, gid int, err error) {
	if user == "" {
		return 0, 0, nil
	}
	u, g, hasGroup := strings.Cut(user, ":")
	uid, pwGID, err := lookupID(root, "etc/passwd", u)
	if err != nil {
		return 0, 0, fmt.Errorf("sandbox: image user %q: %w", user, err)
	}
	gid = pwGID
	if hasGroup {
		if gid, _, err = lookupID(root, "etc/group", g); err != nil {
			return 0, 0, fmt.Errorf("sandbox: image user %q: %w", user, err)
		}
	}
	return uid, gid, nil
}

// lookupID returns the id of name (a number, or a name of the file
// db under root) and, for /etc/passwd, its primary group.
func lookupID(root, db, name string) (id, group int, err error) {
	if n, err := strconv.Atoi(name); err == nil && n >= 0 && n <= jailUID {
		return n, n, nil
	}
	if name == "root" {
		return 0, 0, nil
	}
	r, err := os.OpenRoot(root)
	if err != nil {
		return 0, 0, err
	}
	defer r.Close()
	data, err := r.ReadFile(db)
	if err != nil {
		return 0, 0, fmt.Errorf("no such user or group in the image (%w)", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		f := strings.Split(sc.Text(), ":")
		if len(f) < 3 || f[0] != name {
			continue
		}
		id, err := strconv.Atoi(f[2])
		if err != nil || id < 0 || id > jailUID {
			return 0, 0, fmt.Errorf("%s of the image gives %q the id %q", db, name, f[2])
		}
		group = id
		if len(f) >= 4 {
			if g, err := strconv.Atoi(f[3]); err == nil && g >= 0 && g <= jailUID {
				group = g
			}
		}
		return id, group, nil
	}
	return 0, 0, fmt.Errorf("no %q in the image's /%s", name, db)
}

// imagePython is the interpreter on an image: python3 on the image's
// PATH. Existence is checked with Lstat beneath the root (a symlink is
// followed in the jail, where / is the image).
func imagePython(s *imageSpec) (string, error) {
	r, err := os.OpenRoot(s.root)
	if err != nil {
		return "", fmt.Errorf("sandbox: image root: %w", err)
	}
	defer r.Close()
	for _, dir := range strings.Split(envValue(s.env, "PATH"), ":") {
		if !path.IsAbs(dir) {
			continue
		}
		p := path.Join(dir, "python3")
		if _, err := r.Lstat(p[1:]); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("sandbox: image %s has no python3 on its PATH (%s)", s.root, envValue(s.env, "PATH"))
}

// hasDir checks that the image has the directory dir (an absolute path in
// the jail), following its links beneath the root.
func (s *imageSpec) hasDir(dir string) error {
	if !path.IsAbs(dir) || path.Clean(dir) != dir {
		return fmt.Errorf("sandbox: image working directory %q must be a clean absolute path", dir)
	}
	r, err := os.OpenRoot(s.root)
	if err != nil {
		return fmt.Errorf("sandbox: image root: %w", err)
	}
	defer r.Close()
	if dir == "/" {
		return nil
	}
	st, err := r.Stat(dir[1:])
	if err != nil || !st.IsDir() {
		return fmt.Errorf("sandbox: the image's working directory %s is not a directory of the image", dir)
	}
	return nil
}

// CheckImageRoot checks what CheckImage does but python3: a jail can run
// a command on img (a workspace's bash, say). A failure is the image's.
func CheckImageRoot(img *Image) error {
	_, err := specOf(Request{Image: img, Argv: []string{"/bin/sh"}}, interpreter{})
	return err
}

// CheckImage checks that a jail can run on img: its root reachable by the
// jail's uid, its top-level entries bindable, its user known, its working
// directory present, python3 on its PATH. A failure is the image's (a
// task naming it is invalid), not the jail's.
func CheckImage(img *Image) error {
	_, err := specOf(Request{Image: img}, interpreter{})
	return err
}

// nestedBindPart is what each component of a bind's nested jail path may
// be on an image root.
var nestedBindPart = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9._-]{0,63}$`)

// NestedBindTarget checks that dir (a clean absolute path of at least two
// components, such as an image's working directory /usr/src/app) can be a
// bind's jail path on the image root at root: each component a plain name,
// not beneath the jail's own /tmp, /dev, /proc, /sys or /sandbox, and a
// directory of the image all the way down, no symlink on the way (the
// bind is mounted over the image's directory, which must be there: the
// jail cannot make it in a read-only root).
func NestedBindTarget(root, dir string) error {
	if !path.IsAbs(dir) || path.Clean(dir) != dir || strings.Count(dir, "/") < 2 {
		return fmt.Errorf("sandbox: nested bind target %q: want a clean absolute path of two components or more", dir)
	}
	parts := strings.Split(dir[1:], "/")
	if imageReserved["/"+parts[0]] {
		return fmt.Errorf("sandbox: nested bind target %q: beneath the jail's own /%s", dir, parts[0])
	}
	r, err := os.OpenRoot(root)
	if err != nil {
		return fmt.Errorf("sandbox: image root: %w", err)
	}
	defer r.Close()
	for i, part := range parts {
		if !nestedBindPart.MatchString(part) {
			return fmt.Errorf("sandbox: nested bind target %q: component %q is not a plain name", dir, part)
		}
		st, err := r.Lstat(strings.Join(parts[:i+1], "/"))
		if err != nil || !st.IsDir() {
			return fmt.Errorf("sandbox: nested bind target %q: /%s is not a directory of the image (symlinks are not followed)", dir, strings.Join(parts[:i+1], "/"))
		}
	}
	return nil
}
