package sandbox

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// Bind is a host directory bound into the jail: the only way a jail reaches
// anything of the host's beyond /usr. The workspace package binds an
// agent's workspace this way.
type Bind struct {
	// Host is the directory on the host: an absolute path, no symlink at
	// its end (it is checked with lstat), and no ':' (nsjail's separator).
	// The jail's uid must be able to reach it (traverse its parents).
	Host string
	// Jail is where it appears in the jail: one path component under the
	// root ("/workspace"), not one the jail already has (/usr, /tmp, /dev,
	// /sandbox, /bin, /lib..., /proc, /sys, /etc); on an image root also
	// a directory the image has, deeper down (NestedBindTarget), such as
	// its working directory /usr/src/app.
	Jail string
	// Writable binds it read-write; otherwise read-only. Writes still obey
	// RLIMIT_FSIZE; the caller bounds the directory as a whole (the
	// workspace package mounts a bounded tmpfs there).
	Writable bool
}

// jailBindName is what a Bind's Jail path may be.
var jailBindName = regexp.MustCompile(`^/[a-z][a-z0-9_-]{0,31}$`)

// reservedJailPaths are the jail's own top-level entries, which a Bind may
// not cover or shadow.
var reservedJailPaths = map[string]bool{
	"/usr": true, "/bin": true, "/sbin": true, "/lib": true, "/lib32": true, "/lib64": true, "/libx32": true,
	"/tmp": true, "/dev": true, jailCodeDir: true, "/proc": true, "/sys": true, "/etc": true, "/run": true,
}

// CheckBindTarget reports whether dir can be a Bind's Jail path of a run
// on img (nil: on the host's root).
func CheckBindTarget(img *Image, dir string) error {
	if img == nil {
		return checkBindTarget("", dir)
	}
	return checkBindTarget(img.Root, dir)
}

// checkBindTarget: imageRoot is the image's root, empty for the host's.
func checkBindTarget(imageRoot, dir string) error {
	switch {
	case jailBindName.MatchString(dir) && !reservedJailPaths[dir]:
		return nil
	case imageRoot != "" && strings.Count(dir, "/") > 1:
		// On an image, over a directory of the image: its working
		// directory /usr/src/app, say.
		return NestedBindTarget(imageRoot, dir)
	}
	return fmt.Errorf("sandbox: bind target %q: want one lowercase path component under / that the jail does not already have", dir)
}

// runSpec is what one run executes, as both backends need it.
type runSpec struct {
	argv  []string // the command in the jail
	binds []Bind
	dir   string // working directory in the jail
	// pythonPrefix is the interpreter's installation directory, bound
	// read-only when it lives outside /usr (every run: a command may run
	// python3 too).
	pythonPrefix string
	// image, when set, is the jail's root instead of the host's /usr.
	image *imageSpec
}

// defaultJailDir is the working directory of a run that names none.
const defaultJailDir = "/tmp"

// specOf checks a request's command, binds and directory and returns them
// with defaults filled in: the interpreter on /sandbox/main.py in /tmp.
func specOf(req Request, py interpreter) (runSpec, error) {
	s := runSpec{argv: req.Argv, binds: req.Binds, dir: req.Dir, pythonPrefix: py.prefix}
	if req.Image != nil {
		img, err := specImage(req.Image, req.Binds)
		if err != nil {
			return s, err
		}
		s.image, s.pythonPrefix = img, ""
		if s.dir == "" && req.Image.WorkingDir != "" {
			s.dir = req.Image.WorkingDir
			if err := img.hasDir(s.dir); err != nil {
				return s, err
			}
		}
	}
	if len(s.argv) == 0 && s.image != nil {
		python, err := imagePython(s.image)
		if err != nil {
			return s, err
		}
		s.argv = pythonArgs(python, true)
	} else if len(s.argv) == 0 {
		s.argv = pythonArgs(py.path, false)
	} else if !filepath.IsAbs(s.argv[0]) {
		return s, fmt.Errorf("sandbox: command %q must be an absolute path in the jail", s.argv[0])
	}
	for _, a := range s.argv {
		if strings.IndexByte(a, 0) >= 0 {
			return s, fmt.Errorf("sandbox: an argument of %q holds a NUL byte", s.argv[0])
		}
	}
	seen := map[string]bool{}
	for _, b := range s.binds {
		root := ""
		if s.image != nil {
			root = s.image.root
		}
		if err := checkBindTarget(root, b.Jail); err != nil {
			return s, err
		}
		if seen[b.Jail] {
			return s, fmt.Errorf("sandbox: bind target %q given twice", b.Jail)
		}
		seen[b.Jail] = true
		if !filepath.IsAbs(b.Host) || filepath.Clean(b.Host) != b.Host || strings.ContainsAny(b.Host, ":,\x00\n") {
			return s, fmt.Errorf("sandbox: bind source %q must be a clean absolute path without ':' or ','", b.Host)
		}
		st, err := os.Lstat(b.Host)
		if err != nil {
			return s, fmt.Errorf("sandbox: bind source: %w", err)
		}
		if !st.IsDir() {
			return s, fmt.Errorf("sandbox: bind source %s is not a directory (symlinks are not followed)", b.Host)
		}
	}
	if s.dir == "" {
		s.dir = defaultJailDir
	} else if !filepath.IsAbs(s.dir) || filepath.Clean(s.dir) != s.dir {
		return s, fmt.Errorf("sandbox: working directory %q must be a clean absolute path in the jail", s.dir)
	}
	return s, nil
}
