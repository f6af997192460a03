package workspace

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/agentdataplatform/adp/internal/core"
	"github.com/agentdataplatform/adp/internal/sandbox"
	"golang.org/x/sys/unix"
)

// The diff is taken in two halves. The runtime compares the base (the
// post-setup snapshot, or the seed when the task has no setup) with the
// work directory itself, by descriptors (walk.go): as root it reads
// whatever the agent left, mode 000 or not, and as the files' owner (a
// runtime that is not root) it grants itself read access for the read and
// puts the mode back. It copies only what differs, its own copy, into two
// staging trees a/ and b/; then git diff --no-index --binary between them
// runs in a jail (the staging directory bound at /adp-diff, the patch
// written to out/patch and read as bytes: not through the jail's output,
// which is text). An unchanged tree, however large or
// sparse, never reaches git; and git, which never follows a symlink here
// (it shows it as mode 120000 with its target), cannot reach outside the
// jail anyway. .git directories are left out: the repository's own
// bookkeeping is not the agent's change.
const diffScript = `git -c core.quotepath=off -c diff.noprefix=false diff --no-index --binary --no-color --no-ext-diff --no-textconv --no-renames --src-prefix= --dst-prefix= a b > out/patch
rc=$?
if [ $rc -le 1 ]; then exit 0; fi
exit $rc
`

const diffTimeout = 60 * time.Second

// diffMemoryBytes is the address space of the diff's git: it holds both
// sides of a changed file (up to the workspace's per-file limit) at once.
const diffMemoryBytes = 1 << 30

// Names of the diff's staging directory, beside seed/ and live/.
const (
	diffDir     = "diff"
	baseDir     = "base"
	patchFile   = "patch"
	diffOutDir  = "out"
	stageBefore = "a"
	stageAfter  = "b"
	// jailDiffDir is where the staging directory appears in the diff's jail.
	jailDiffDir = "/adp-diff"
)

// Diff returns the workspace's diff against its base (the seed, or the
// snapshot Snapshot took), at most maxBytes of it (0: DefaultDiffBytes).
// It runs in a jail (hence ctx). When part of the change cannot be read or
// shown (a path past PATH_MAX, a file the runtime cannot read, git
// failing), Diff.Incomplete says why: the patch is then not the whole
// change.
func (w *Workspace) Diff(ctx context.Context, maxBytes int) (Diff, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return Diff{}, errClosed
	}
	if maxBytes <= 0 {
		maxBytes = DefaultDiffBytes
	}
	ctx, stop := mergeCancel(ctx, w.ctx)
	defer stop()
	special, err := removeSpecialFiles(ctx, w.work)
	if err != nil {
		return Diff{Removed: special, Incomplete: "walking the workspace: " + err.Error()}, nil
	}
	// The staging trees go in the workspace's tmpfs, where making them
	// costs little; when it has no room for them (the agent's files near
	// the cap), beside the workspace on disk. Nothing is mounted beneath
	// either: os.RemoveAll, not removeTree, which reads the mount table.
	stage := w.hostPath(diffDir)
	if w.tmpfs {
		stage = w.hostPath(liveDir, diffDir)
	}
	_ = os.RemoveAll(stage)
	defer func() { _ = os.RemoveAll(stage) }()
	n, err := w.stage(ctx, stage)
	if w.tmpfs && (errors.Is(err, unix.ENOSPC) || errors.Is(err, unix.EDQUOT)) {
		_ = os.RemoveAll(stage)
		stage = w.hostPath(diffDir)
		defer func() { _ = os.RemoveAll(stage) }()
		n, err = w.stage(ctx, stage)
	}
	if ctx.Err() != nil {
		return Diff{}, fmt.Errorf("workspace diff: %w", context.Cause(ctx))
	}
	if err != nil {
		return Diff{Removed: special, Incomplete: err.Error()}, nil
	}
	if n == 0 {
		return Diff{Removed: special}, nil
	}
	lim := w.m.limits
	lim.Wall, lim.CPU = diffTimeout, diffTimeout
	lim.MemoryBytes = max(lim.MemoryBytes, diffMemoryBytes)
	// The patch's file: room for a cut at a file boundary after the bound.
	lim.MaxFileBytes = max(lim.MaxFileBytes, int64(4*maxBytes), 4<<20)
	res, err := w.m.jail.Run(ctx, sandbox.Request{
		Argv: shellArgv(diffScript),
		// One bind (each costs the jail a mount): only git runs here, on
		// the runtime's copies, and only out/ is the jail's to write.
		Binds:  []sandbox.Bind{{Host: stage, Jail: jailDiffDir, Writable: true}},
		Dir:    jailDiffDir,
		Limits: lim,
	})
	if err != nil {
		return Diff{}, fmt.Errorf("workspace diff: %w", err)
	}
	patch, rerr := os.ReadFile(filepath.Join(stage, diffOutDir, patchFile))
	cut := false
	switch {
	case res.ErrorType == core.ErrNone && rerr == nil:
	case res.ExitCode == 128+int(unix.SIGXFSZ) && rerr == nil:
		// The patch passed its file's bound: keep the head.
		cut = true
	default:
		why := fmt.Sprintf("git diff failed: %s (exit %d): %s", res.ErrorMessage, res.ExitCode, clip(res.Stderr, 500))
		if rerr != nil {
			why += "; " + rerr.Error()
		}
		return Diff{Removed: special, Incomplete: why}, nil
	}
	sections := dropGitDirs(string(patch))
	var partial string
	if cut && len(sections) > 0 {
		// git was stopped in the middle of the last section.
		partial = sectionPath(sections[len(sections)-1])
		sections = sections[:len(sections)-1]
	}
	d := boundDiff(sections, maxBytes)
	if cut {
		d.Truncated = true
		if partial != "" {
			d.Files = append(d.Files, partial)
		}
	}
	d.Removed = special
	return d, nil
}

// Snapshot makes the workspace's present state the base of its diff (the
// runtime's own copy, which no step can reach): after a task's setup, so
// that the diff is what the agent changed, not what setup did. With a
// writable root it also makes the root's present state the verify step's
// (rebaseRoot).
func (w *Workspace) Snapshot(ctx context.Context) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return errClosed
	}
	ctx, stop := mergeCancel(ctx, w.ctx)
	defer stop()
	if _, err := removeSpecialFiles(ctx, w.work); err != nil {
		return fmt.Errorf("workspace snapshot: %w", err)
	}
	dir := w.hostPath(baseDir)
	_ = os.RemoveAll(dir)
	if err := os.Mkdir(dir, 0o755); err != nil {
		return fmt.Errorf("workspace snapshot: %w", err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return fmt.Errorf("workspace snapshot: %w", err)
	}
	cp := copier{caps: unbounded(), anyLink: true}
	if err := cp.tree(ctx, w.work, root); err != nil {
		root.Close()
		return fmt.Errorf("workspace snapshot: %w", err)
	}
	if w.base != w.seed {
		w.base.Close()
	}
	w.base = root
	if w.image != nil && w.image.Writable {
		if err := w.rebaseRoot(); err != nil {
			return fmt.Errorf("workspace snapshot: %w", err)
		}
	}
	return nil
}

// stage compares the base with the work directory and copies what differs
// into <dir>/a (the base's side) and <dir>/b (the work directory's), with
// <dir>/out for git's patch, made at the first difference (a directory on
// disk costs more than comparing a small tree). It returns how many
// entries differ.
func (w *Workspace) stage(ctx context.Context, dir string) (int, error) {
	base, err := rootDir(w.base)
	if err != nil {
		return 0, err
	}
	defer base.Close()
	work, err := rootDir(w.work)
	if err != nil {
		return 0, err
	}
	defer work.Close()
	s := &stager{ctx: ctx, stageDir: dir, owner: w.m.owner}
	defer s.close()
	err = s.dir(base, work, "")
	return s.n, err
}

// stager copies the entries that differ between two trees into a and b
// beneath stageDir.
type stager struct {
	ctx      context.Context
	stageDir string
	owner    owner // of out/, which the jail writes
	a, b     *os.Root
	n        int
}

// roots makes the staging directories at the first difference.
func (s *stager) roots() error {
	if s.a != nil {
		return nil
	}
	for _, d := range []string{s.stageDir, filepath.Join(s.stageDir, stageBefore), filepath.Join(s.stageDir, stageAfter), filepath.Join(s.stageDir, diffOutDir)} {
		if err := os.Mkdir(d, 0o755); err != nil {
			return err
		}
	}
	if s.owner.chown {
		if err := os.Chown(filepath.Join(s.stageDir, diffOutDir), s.owner.uid, s.owner.gid); err != nil {
			return err
		}
	}
	a, err := os.OpenRoot(filepath.Join(s.stageDir, stageBefore))
	if err != nil {
		return err
	}
	b, err := os.OpenRoot(filepath.Join(s.stageDir, stageAfter))
	if err != nil {
		a.Close()
		return err
	}
	s.a, s.b = a, b
	return nil
}

func (s *stager) close() {
	if s.a != nil {
		s.a.Close()
		s.b.Close()
	}
}

// dir compares the directories x (the base's; nil when it has none there)
// and y (the work directory's; nil likewise) at rel.
func (s *stager) dir(x, y *os.File, rel string) error {
	var xs, ys []dirEntry
	var err error
	if x != nil {
		if xs, err = readDir(x, rel); err != nil {
			return err
		}
	}
	if y != nil {
		if ys, err = readDir(y, rel); err != nil {
			return err
		}
	}
	for len(xs) > 0 || len(ys) > 0 {
		if err := s.ctx.Err(); err != nil {
			return err
		}
		var xe, ye *dirEntry
		switch {
		case len(ys) == 0 || len(xs) > 0 && xs[0].name < ys[0].name:
			xe, xs = &xs[0], xs[1:]
		case len(xs) == 0 || ys[0].name < xs[0].name:
			ye, ys = &ys[0], ys[1:]
		default:
			xe, ye, xs, ys = &xs[0], &ys[0], xs[1:], ys[1:]
		}
		p := joinRel(rel, orEntry(xe, ye).name)
		if len(p) > maxPathBytes {
			return fmt.Errorf("%q...: %w", p[:64], errPathTooLong)
		}
		if orEntry(xe, ye).name == ".git" && (xe == nil || xe.isDir()) && (ye == nil || ye.isDir()) {
			continue
		}
		if xe != nil && ye != nil && xe.isDir() && ye.isDir() {
			if err := s.both(x, y, xe, ye); err != nil {
				return err
			}
			continue
		}
		if xe != nil && ye != nil {
			same, err := sameEntry(x, y, xe, ye)
			if err != nil {
				return err
			}
			if same {
				continue
			}
		}
		if err := s.roots(); err != nil {
			return err
		}
		if xe != nil {
			if err := s.copy(s.a, x, xe); err != nil {
				return err
			}
		}
		if ye != nil {
			if err := s.copy(s.b, y, ye); err != nil {
				return err
			}
		}
		s.n++
	}
	return nil
}

func orEntry(x, y *dirEntry) *dirEntry {
	if x != nil {
		return x
	}
	return y
}

// both descends into a directory both trees have.
func (s *stager) both(x, y *os.File, xe, ye *dirEntry) error {
	xd, xr, err := openDirAt(x, xe.name, xe)
	if err != nil {
		return fmt.Errorf("opening %q of the base: %w", xe.path, err)
	}
	defer xr()
	defer xd.Close()
	yd, yr, err := openDirAt(y, ye.name, ye)
	if err != nil {
		return fmt.Errorf("opening %q: %w", ye.path, err)
	}
	defer yr()
	defer yd.Close()
	return s.dir(xd, yd, ye.path)
}

// copy puts e (of the directory src) into the staging tree dst, a whole
// directory with its contents.
func (s *stager) copy(dst *os.Root, src *os.File, e *dirEntry) error {
	parent := "."
	if i := strings.LastIndexByte(e.path, '/'); i >= 0 {
		parent = e.path[:i]
	}
	cur := &dirCursor{root: dst}
	defer cur.close()
	d, err := cur.enter(parent)
	if err != nil {
		return fmt.Errorf("staging %q: %w", e.path, err)
	}
	cp := copier{caps: unbounded(), anyLink: true, skipGit: true}
	return cp.entry(s.ctx, src, d, e)
}

// sameEntry reports whether x and y hold the same thing as git sees it:
// the same type, the same bytes and executable bit for a file, the same
// target for a link.
func sameEntry(xdir, ydir *os.File, x, y *dirEntry) (bool, error) {
	switch {
	case x.mode() != y.mode():
		return false, nil
	case x.isSymlink():
		a, err := readlinkAt(xdir, x.name)
		if err != nil {
			return false, err
		}
		b, err := readlinkAt(ydir, y.name)
		return a == b, err
	case x.isRegular():
		if x.executable() != y.executable() || x.st.Size != y.st.Size {
			return false, nil
		}
		return sameContent(xdir, ydir, x, y)
	}
	return false, nil
}

// sameContent compares two regular files byte by byte.
func sameContent(xdir, ydir *os.File, x, y *dirEntry) (bool, error) {
	xf, xr, err := openAt(xdir, x.name, x, 0)
	if err != nil {
		return false, fmt.Errorf("reading %q of the base: %w", x.path, err)
	}
	defer xr()
	defer xf.Close()
	yf, yr, err := openAt(ydir, y.name, y, 0)
	if err != nil {
		return false, fmt.Errorf("reading %q: %w", y.path, err)
	}
	defer yr()
	defer yf.Close()
	const chunk = 64 << 10
	a, b := make([]byte, chunk), make([]byte, chunk)
	for {
		n, errA := io.ReadFull(xf, a)
		m, errB := io.ReadFull(yf, b)
		if n != m || !bytes.Equal(a[:n], b[:m]) {
			return false, nil
		}
		endA := errors.Is(errA, io.EOF) || errors.Is(errA, io.ErrUnexpectedEOF)
		endB := errors.Is(errB, io.EOF) || errors.Is(errB, io.ErrUnexpectedEOF)
		switch {
		case errA != nil && !endA:
			return false, fmt.Errorf("reading %q of the base: %w", x.path, errA)
		case errB != nil && !endB:
			return false, fmt.Errorf("reading %q: %w", y.path, errB)
		case endA || endB:
			return endA == endB, nil
		}
	}
}

// removeSpecialFiles removes the FIFOs, sockets and devices beneath root
// (only a step can make them; a seed has none) and returns their paths:
// they hold no content, and git diff refuses a tree that has one. The walk
// and the removal stay beneath root and follow no link.
func removeSpecialFiles(ctx context.Context, root *os.Root) ([]string, error) {
	var found []string
	err := walkTree(ctx, root, func(dir *os.File, e dirEntry) error {
		if e.isDir() || e.isRegular() || e.isSymlink() {
			return nil
		}
		if err := unix.Unlinkat(int(dir.Fd()), e.name, 0); err != nil && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("removing %q: %w", e.path, err)
		}
		found = append(found, e.path)
		return nil
	})
	return found, err
}

// diffSections splits a git diff into its per-file sections.
func diffSections(patch string) []string {
	var out []string
	for len(patch) > 0 {
		next := strings.Index(patch[1:], "\ndiff --git ")
		if next < 0 {
			out = append(out, patch)
			break
		}
		out = append(out, patch[:next+2])
		patch = patch[next+2:]
	}
	return out
}

// sectionPath is the path of a section ("diff --git a/p b/p"), relative to
// the workspace; git quotes unusual names in C style.
func sectionPath(section string) string {
	line, _, _ := strings.Cut(section, "\n")
	rest := strings.TrimPrefix(line, "diff --git ")
	var first string
	if strings.HasPrefix(rest, `"`) {
		if q, err := strconv.QuotedPrefix(rest); err == nil {
			first, _ = strconv.Unquote(q)
		}
	} else {
		// Both sides name the same path (no renames): "X/p Y/p".
		first = rest[:len(rest)/2]
	}
	if len(first) > 2 && (strings.HasPrefix(first, "a/") || strings.HasPrefix(first, "b/")) {
		return first[2:]
	}
	return first
}

// dropGitDirs removes the sections of files under a .git directory: the
// repository's own bookkeeping is not the agent's change.
func dropGitDirs(patch string) []string {
	var keep []string
	for _, s := range diffSections(patch) {
		p := sectionPath(s)
		if p == ".git" || strings.HasPrefix(p, ".git/") || strings.Contains(p, "/.git/") {
			continue
		}
		keep = append(keep, s)
	}
	return keep
}

// boundDiff joins sections up to maxBytes, whole sections only (the first
// one cut if even it does not fit), and lists the changed files.
func boundDiff(sections []string, maxBytes int) Diff {
	var d Diff
	var b strings.Builder
	for _, s := range sections {
		d.Files = append(d.Files, sectionPath(s))
		if d.Truncated {
			continue
		}
		if b.Len()+len(s) > maxBytes {
			d.Truncated = true
			if b.Len() == 0 {
				b.WriteString(trimRuneEnd(s[:maxBytes]))
			}
			continue
		}
		b.WriteString(s)
	}
	d.Patch = b.String()
	return d
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return trimRuneEnd(s[:n]) + "..."
}
