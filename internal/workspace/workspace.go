// Package workspace gives a task attempt a persistent, jailed working
// directory: a shell whose working directory and exported variables carry
// over from one call to the next, Python runs, file tools, and the diff of
// the workspace against its seed (the patch SWE-style training uses).
//
// # Layout
//
// A Manager owns one directory on the host (Config.Root); each Workspace is
// a directory beneath it:
//
//	<root>/mgr-<pid>-<id>/ws-<id>/
//	    seed/   the pristine copy of the seed (the diff's base until Snapshot)
//	    base/   the copy Snapshot took after setup (the diff's base then)
//	    verify/ while Verify runs: the hidden tests, read-only to the jail
//	            (verify.go)
//	    live/   a tmpfs of Config.MaxBytes and Config.MaxFiles inodes (where the
//	            runtime may mount one; a plain directory otherwise), holding
//	        work/   bound read-write at /workspace: the agent's files
//	        state/  bound read-write at /adp-state: the shell's saved state
//	        verify/ while Verify runs: /logs, with .adp/ (the runtime's
//	                sitecustomize and the check's records)
//	        diff/   while Diff runs: what differs, staged for git (on disk
//	                beside seed/ when the tmpfs is full)
//
// Everything the jail may write is owned by the jail's outside uid
// (sandbox.Jail.Owner), so uid 65534 in the jail can write it. Each
// manager holds a flock on mgr-<pid>-<id>.lock beside its directory; a new
// manager removes (unmounting first) the directories whose lock is free,
// those of runtimes that died.
//
// A workspace holds no process between steps: an open workspace costs its
// files (in memory, with the tmpfs), not a jail, so SANDBOX_MAX_WORKSPACES
// may exceed SANDBOX_CONCURRENCY, which still bounds the jails running.
//
// # Steps
//
// Every Bash or Python call is its own jail run (sandbox.Jail.Run), jailed
// as a single program is (uid 65534, no network, read-only root, rlimits,
// process cap, seccomp filter, bounded /tmp), with /workspace (the work
// directory, read-write) as its working directory and /adp-state (the
// shell's state, read-write) besides. A wrapper script, bash as the jail's
// pid 1, restores the state the previous call saved (its `export -p` and
// its working directory), runs the command with `eval`, and saves the state
// again when it exits. Because each call is one jail, whatever a call left
// running (a background process, a daemon that closed its output) dies with
// the call: the pid namespace ends with its init. A call that passes its
// timeout is killed with everything it started and returns what it printed
// so far with a timeout note; its changes to the working directory and the
// exports are lost (the next call starts from the state before it), the
// files it wrote stay.
//
// # The runtime's side
//
// File tools, the copy-in of seeds, size checks and cleanup never follow a
// path out of the workspace: they open beneath the workspace with os.Root
// (which refuses symlinks and ".." that lead out), check what they opened
// with fstat (regular files only: a FIFO could block the runtime), and
// never call os.ReadFile(filepath.Join(ws, userPath)). Walks of a tree go
// by descriptors (walk.go): linear in the tree, whatever its depth. The
// diff compares the base with the work directory by descriptors, without
// following a link, and runs git in a jail on copies of what differs
// (diff.go).
//
// # Caps
//
// Config.MaxBytes and Config.MaxFiles bound the workspace: the tmpfs's
// size= and nr_inodes= enforce them in the kernel during a step (a write
// past them fails with ENOSPC); after the step the runtime sees the tmpfs
// full and the Observation carries ErrorType output_limit: the attempt
// ends there. RLIMIT_FSIZE bounds each file a step writes.
//
// Observations are bounded by Config.ObservationBytes: stdout and stderr
// keep their head and tail, the middle is cut with a marker.
package workspace

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/agentdataplatform/adp/internal/core"
	"github.com/agentdataplatform/adp/internal/sandbox"
)

// Defaults of Config, the defaults of the sandbox runtime's variables
// (docs/configuration.md).
const (
	// DefaultMaxBytes is SANDBOX_WORKSPACE_MB's default in bytes.
	DefaultMaxBytes = 256 << 20
	// DefaultMaxFiles is SANDBOX_WORKSPACE_FILES's default: files and
	// directories of one workspace.
	DefaultMaxFiles = 20000
	// DefaultObservationBytes is SANDBOX_OBSERVATION_BYTES's default: what
	// a model sees of one step's output.
	DefaultObservationBytes = 16 << 10
	// DefaultMaxOpen is SANDBOX_MAX_WORKSPACES's default: workspaces open at once.
	DefaultMaxOpen = 8
	// DefaultStepTimeout is a step's timeout when the caller gives none.
	DefaultStepTimeout = 30 * time.Second
	// DefaultDiffBytes bounds Diff when it is given no bound.
	DefaultDiffBytes = 256 << 10
)

// Config configures a Manager. Zero fields take the defaults above.
type Config struct {
	// Root is the host directory where live workspaces are made (each
	// manager makes a directory of its own beneath it). Default:
	// $TMPDIR/adp-workspaces. It and its parents must be traversable by
	// the jail's uid.
	Root string
	// SeedRoot is where task `workspace` seeds live (WORKSPACE_ROOT,
	// default $OUTPUT_DIR/workspaces): Seed.From is a path beneath it.
	SeedRoot string
	// MaxBytes caps the bytes of one workspace (SANDBOX_WORKSPACE_MB).
	MaxBytes int64
	// MaxFiles caps its files and directories (SANDBOX_WORKSPACE_FILES).
	MaxFiles int
	// ObservationBytes bounds what a step's Observation keeps of its
	// output (SANDBOX_OBSERVATION_BYTES).
	ObservationBytes int
	// MaxOpen bounds the workspaces open at once (SANDBOX_MAX_WORKSPACES);
	// Open waits for a free one. It is separate from SANDBOX_CONCURRENCY,
	// which bounds the jails running at once: an open workspace holds no
	// jail while its model thinks.
	MaxOpen int
	// MaxSnapshots bounds the post-setup snapshots kept (SANDBOX_SNAPSHOTS;
	// see OpenPrepared).
	MaxSnapshots int
}

// Names of the layout (see the package doc).
const (
	managerDirPrefix = "mgr-"
	workspacePrefix  = "ws-"
	seedDir          = "seed"
	liveDir          = "live"
	workDir          = "work"
	stateDir         = "state"
	// JailDir is where the workspace appears in the jail, the shell's
	// first working directory.
	JailDir = "/workspace"
	// jailStateDir is where the shell's state appears in the jail.
	jailStateDir = "/adp-state"
)

// Manager owns the workspaces of one runtime. It is safe for concurrent use.
type Manager struct {
	cfg    Config
	jail   sandbox.Jail
	limits sandbox.Limits
	dir    string   // this manager's directory beneath cfg.Root
	lock   *os.File // held while the manager lives (see makeManagerDir)
	owner  owner
	slots  chan struct{}
	// noTmpfs is set once mounting a tmpfs failed: workspaces are plain
	// directories, their caps checked after each step.
	noTmpfs atomic.Bool
	log     *slog.Logger
	// idmaps makes the idmapped image roots of writable roots (image.go).
	idmaps idmaps
	// snaps are the post-setup snapshots (snapshot.go).
	snaps *snapshots
}

func (c Config) withDefaults() Config {
	if c.Root == "" {
		c.Root = filepath.Join(os.TempDir(), "adp-workspaces")
	}
	if c.MaxBytes <= 0 {
		c.MaxBytes = DefaultMaxBytes
	}
	if c.MaxFiles <= 0 {
		c.MaxFiles = DefaultMaxFiles
	}
	if c.ObservationBytes <= 0 {
		c.ObservationBytes = DefaultObservationBytes
	}
	if c.MaxOpen <= 0 {
		c.MaxOpen = DefaultMaxOpen
	}
	if c.MaxSnapshots <= 0 {
		c.MaxSnapshots = DefaultMaxSnapshots
	}
	return c
}

// NewManager returns a manager whose steps run in jail (normally the
// runtime's sandbox.Limit'ed jail, so steps count against
// SANDBOX_CONCURRENCY) under limits (the wall and CPU limit of a step are
// its own timeout). It makes its directory beneath cfg.Root and removes
// what managers of dead processes left there.
func NewManager(cfg Config, jail sandbox.Jail, limits sandbox.Limits) (*Manager, error) {
	cfg = cfg.withDefaults()
	root, err := filepath.Abs(cfg.Root)
	if err != nil {
		return nil, fmt.Errorf("workspace root %q: %w", cfg.Root, err)
	}
	cfg.Root = root
	if err := os.MkdirAll(root, 0o711); err != nil {
		return nil, fmt.Errorf("workspace root: %w", err)
	}
	if err := traversable(root); err != nil {
		return nil, err
	}
	removeStaleManagers(root)
	dir, lock, err := makeManagerDir(root)
	if err != nil {
		return nil, fmt.Errorf("workspace root: %w", err)
	}
	uid, gid := jail.Owner()
	m := &Manager{
		cfg: cfg, jail: jail, limits: limits, dir: dir, lock: lock,
		owner: owner{uid: uid, gid: gid, chown: os.Geteuid() == 0},
		slots: make(chan struct{}, cfg.MaxOpen),
		log:   slog.Default().With("component", "workspace"),
	}
	m.snaps = &snapshots{max: cfg.MaxSnapshots, entries: map[string]*snapEntry{}, log: m.log}
	return m, nil
}

// traversable checks that the jail's uid can reach dir: every directory
// from / down to it searchable by others.
func traversable(dir string) error {
	for p := dir; ; p = filepath.Dir(p) {
		st, err := os.Stat(p)
		if err != nil {
			return fmt.Errorf("workspace root: %w", err)
		}
		if st.Mode().Perm()&0o001 == 0 {
			return fmt.Errorf("workspace root %s: %s (mode %v) is not searchable by others, so the jail cannot reach its workspaces; choose a directory like /tmp/adp-workspaces", dir, p, st.Mode().Perm())
		}
		if p == "/" {
			return nil
		}
	}
}

// Close removes the manager's directory with every workspace left in it.
// Workspaces still open should be closed first.
func (m *Manager) Close() error {
	err := removeTree(m.dir)
	m.idmaps.close()
	_ = os.Remove(m.dir + lockSuffix)
	m.lock.Close()
	return err
}

// Seed is what a workspace starts with: Files written over the copy of
// From.
type Seed struct {
	// Files maps relative paths (no "..", not absolute) to contents.
	Files map[string][]byte
	// From is a path relative to Config.SeedRoot: a directory, a .tar or a
	// .tar.gz, copied into the workspace (never modified in place).
	From string
	// Image, when set, is the jail's root for every step and the check
	// (see image.go): the image's bash, environment, user and working
	// directory, where the workspace is mounted (JailDir when the image
	// has none, or one that cannot be a mount point). The diff still runs
	// on the host's root (git on the runtime's copies).
	Image *sandbox.Image
	// WritableRoot makes the image's root writable through an overlay
	// whose upper layer is in the workspace's tmpfs, so it counts against
	// the caps (MaxBytes, MaxFiles). It needs an Image, and a runtime
	// that may mount (CAP_SYS_ADMIN): otherwise Open refuses it with
	// ErrNoOverlay.
	WritableRoot bool
	// Resources are what the task asks beyond the runtime's limits (its
	// constraints.resources, checked against the runtime's caps by the
	// caller): every step's and the check's jail limits, and the
	// workspace's size (workspace_mb for MaxBytes).
	Resources core.Resources
}

// SeedError says why a seed cannot make a workspace: the task is invalid
// (a path out of the workspace, a missing seed, too large), as opposed to
// the runtime failing.
type SeedError struct {
	// Path is the offending path (a Files key, an entry of the tar, From).
	Path   string
	Reason string
}

func (e *SeedError) Error() string {
	return fmt.Sprintf("workspace seed %q: %s", e.Path, e.Reason)
}

// ToolError is a file tool's failure as the model should see it (no such
// file, a path out of the workspace, old text not found): an observation,
// not a system error. ErrorType is output_limit when the write would pass
// the workspace's caps (the attempt ends), empty otherwise.
type ToolError struct {
	Msg       string
	ErrorType core.ErrorType
}

func (e *ToolError) Error() string { return e.Msg }

// Open makes a workspace from seed. It waits for a free slot (MaxOpen) or
// ctx. A bad seed is a *SeedError; other errors are the runtime's.
func (m *Manager) Open(ctx context.Context, seed Seed) (*Workspace, error) {
	select {
	case m.slots <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("workspace: waiting for a free workspace (SANDBOX_MAX_WORKSPACES=%d): %w", m.cfg.MaxOpen, context.Cause(ctx))
	}
	w, err := m.open(ctx, seed, nil)
	if err != nil {
		<-m.slots
		return nil, err
	}
	return w, nil
}

// open makes a workspace from seed, or from snap (a snapshot whose
// reference the caller holds: the workspace takes it over) when snap is
// set (seed.Files and seed.From are then ignored: the snapshot holds
// their result).
func (m *Manager) open(ctx context.Context, seed Seed, snap *snapshot) (w *Workspace, err error) {
	if snap != nil {
		defer func() {
			if err != nil {
				m.snaps.release(snap)
			}
		}()
	}
	if seed.WritableRoot && seed.Image == nil {
		return nil, &SeedError{Path: "writable_root", Reason: "a writable root is an image's: the task names no environment"}
	}
	dir, err := os.MkdirTemp(m.dir, workspacePrefix)
	if err != nil {
		return nil, fmt.Errorf("workspace: %w", err)
	}
	ws := &Workspace{m: m, dir: dir, jailDir: JailDir, bash: defaultBash,
		limits: m.limits.For(seed.Resources), maxBytes: m.maxBytes(seed)}
	w = ws // a failed open returns nil, and the deferred cleanup needs ws
	defer func() {
		if err != nil {
			ws.closeRoots()
			_ = removeTree(dir)
		}
	}()
	if err := os.Chmod(dir, 0o711); err != nil {
		return nil, err
	}
	w.ctx, w.cancel = context.WithCancel(context.Background())

	// The seed first, on disk (read-only to the jail), then its copy in
	// the live tree. A snapshot holds the seed's copy after setup.
	if snap == nil {
		seedPath := filepath.Join(dir, seedDir)
		if err := os.Mkdir(seedPath, 0o755); err != nil {
			return nil, err
		}
		if w.seed, err = os.OpenRoot(seedPath); err != nil {
			return nil, err
		}
		if err := m.writeSeed(ctx, w.seed, seed); err != nil {
			return nil, err
		}
	}

	live := filepath.Join(dir, liveDir)
	if err := os.Mkdir(live, 0o755); err != nil {
		return nil, err
	}
	if !m.noTmpfs.Load() {
		if err := mountLive(live, w.maxBytes, m.cfg.MaxFiles, m.owner); err != nil {
			if m.noTmpfs.CompareAndSwap(false, true) {
				m.log.Warn("workspaces are plain directories, their caps checked after each step only: "+
					"a tmpfs per workspace, which bounds it during a step, needs CAP_SYS_ADMIN", "err", err)
			}
		} else {
			w.tmpfs = true
		}
	}
	if !w.tmpfs && m.owner.chown {
		if err := os.Chown(live, m.owner.uid, m.owner.gid); err != nil {
			return nil, err
		}
	}
	liveRoot, err := os.OpenRoot(live)
	if err != nil {
		return nil, err
	}
	defer liveRoot.Close()
	for _, d := range []string{workDir, stateDir} {
		if err := mkdirAll(liveRoot, d, m.owner); err != nil {
			return nil, fmt.Errorf("workspace: %w", err)
		}
	}
	if w.state, err = liveRoot.OpenRoot(stateDir); err != nil {
		return nil, err
	}
	w.workHost = w.hostPath(liveDir, workDir)
	if snap != nil {
		w.snap = snap
		if err := w.fromSnapshot(ctx, liveRoot); err != nil {
			return nil, err
		}
	} else {
		if w.work, err = liveRoot.OpenRoot(workDir); err != nil {
			return nil, err
		}
		c := &caps{maxBytes: w.maxBytes, maxFiles: m.cfg.MaxFiles}
		if err := copyTree(ctx, w.seed, w.work, m.owner, c); err != nil {
			return nil, fmt.Errorf("workspace: copying the seed: %w", err)
		}
		w.base = w.seed
	}
	if seed.Image != nil {
		if err := w.useImage(seed.Image, seed.WritableRoot); err != nil {
			return nil, err
		}
	}
	w.cwd = w.jailDir
	return w, nil
}

// maxBytes is the size cap of seed's workspace: the task's workspace_mb,
// else SANDBOX_WORKSPACE_MB.
func (m *Manager) maxBytes(seed Seed) int64 {
	if mb := seed.Resources.WorkspaceMB; mb > 0 {
		return int64(mb) << 20
	}
	return m.cfg.MaxBytes
}

// writeSeed fills root with seed.From's copy, then seed.Files.
func (m *Manager) writeSeed(ctx context.Context, root *os.Root, seed Seed) error {
	c := &caps{maxBytes: m.maxBytes(seed), maxFiles: m.cfg.MaxFiles}
	seedOwner := owner{} // the seed stays the runtime's: the jail reads it only
	if seed.From != "" {
		if err := m.copyFrom(ctx, root, seed.From, seedOwner, c); err != nil {
			return err
		}
	}
	names := make([]string, 0, len(seed.Files))
	for name := range seed.Files {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if err := ctx.Err(); err != nil {
			return err
		}
		p, ok := localPath(name)
		if !ok {
			return &SeedError{Path: name, Reason: "files: paths are relative, without .."}
		}
		data := seed.Files[name]
		if err := c.add(p, int64(len(data))); err != nil {
			return err
		}
		if int64(len(data)) > m.limits.MaxFileBytes && m.limits.MaxFileBytes > 0 {
			return &SeedError{Path: name, Reason: fmt.Sprintf("%d bytes, over the per-file limit of %d", len(data), m.limits.MaxFileBytes)}
		}
		if err := writeFile(root, p, data, 0o644, seedOwner); err != nil {
			return seedFSError(name, err)
		}
	}
	// Directories made for Files count too.
	if _, n, err := usage(ctx, root); err != nil {
		return err
	} else if n > m.cfg.MaxFiles {
		return &SeedError{Path: ".", Reason: fmt.Sprintf("the seed has more than %d files and directories (SANDBOX_WORKSPACE_FILES)", m.cfg.MaxFiles)}
	}
	return nil
}

// copyFrom copies the seed at from (beneath SeedRoot): a directory, a .tar
// or a .tar.gz/.tgz.
func (m *Manager) copyFrom(ctx context.Context, dst *os.Root, from string, o owner, c *caps) error {
	p, ok := localPath(from)
	if !ok {
		return &SeedError{Path: from, Reason: "workspace: a path relative to WORKSPACE_ROOT, without .."}
	}
	if m.cfg.SeedRoot == "" {
		return &SeedError{Path: from, Reason: "no WORKSPACE_ROOT is configured"}
	}
	src, err := os.OpenRoot(m.cfg.SeedRoot)
	if errors.Is(err, fs.ErrNotExist) {
		return &SeedError{Path: from, Reason: fmt.Sprintf("WORKSPACE_ROOT (%s) does not exist", m.cfg.SeedRoot)}
	}
	if err != nil {
		return fmt.Errorf("WORKSPACE_ROOT: %w", err)
	}
	defer src.Close()
	st, err := src.Stat(p)
	if err != nil {
		return &SeedError{Path: from, Reason: fmt.Sprintf("not found under WORKSPACE_ROOT (%s): %v", m.cfg.SeedRoot, err)}
	}
	if st.IsDir() {
		sub, err := src.OpenRoot(p)
		if err != nil {
			return &SeedError{Path: from, Reason: err.Error()}
		}
		defer sub.Close()
		return copyTree(ctx, sub, dst, o, c)
	}
	gz := strings.HasSuffix(p, ".tar.gz") || strings.HasSuffix(p, ".tgz")
	if !gz && !strings.HasSuffix(p, ".tar") {
		return &SeedError{Path: from, Reason: "want a directory, a .tar or a .tar.gz"}
	}
	f, _, err := openRegular(src, p, 1<<40)
	if err != nil {
		return &SeedError{Path: from, Reason: err.Error()}
	}
	defer f.Close()
	return extractTar(ctx, f, gz, dst, o, c, from)
}

// Workspace is one attempt's workspace. Its methods are not meant to be
// called concurrently (they wait for each other), except Close, which ends
// a step in progress.
type Workspace struct {
	m   *Manager
	dir string
	// limits are the jail limits of its steps and check (the runtime's,
	// with the task's resources); maxBytes its size cap.
	limits   sandbox.Limits
	maxBytes int64
	// tmpfs: the live tree is a bounded tmpfs.
	tmpfs bool
	// seed, work and state are roots of the seed's copy, the work
	// directory and the shell's state; base is the diff's base: the seed,
	// the snapshot Snapshot took, or the post-setup state of the
	// Prepared snapshot the workspace started from. seed is nil in the
	// last case.
	seed, work, state, base *os.Root
	// workHost is the work directory on the host, bound at jailDir: the
	// live tree's work/, or the overlay over a snapshot's.
	workHost string
	// jailDir is where the work directory appears in the jail: JailDir,
	// or the image's working directory.
	jailDir string
	// image is the jail's root of steps and checks (nil: the host's);
	// with a writable root, the overlay over the image. bash is the
	// shell the steps run.
	image *sandbox.Image
	bash  string
	// imageLower is the image's root as the writable root's overlay takes
	// it (idmapped); rootLayers are the post-setup layers above it,
	// newest first (image.go).
	imageLower string
	rootLayers []string
	// snap is the snapshot the workspace started from, released at Close.
	snap *snapshot
	// ctx ends with Close: it cancels a step in progress.
	ctx    context.Context
	cancel context.CancelFunc

	mu     sync.Mutex // one step or tool at a time
	cwd    string     // the shell's working directory after the last step
	closed bool
	once   sync.Once
}

// Observation is what one Bash or Python step did, as the model sees it
// (String) and as the trajectory records it.
type Observation struct {
	// ExitCode is the command's exit status; 128+N when killed by signal N
	// (137 at a timeout).
	ExitCode int
	// Stdout and Stderr are the kept parts of the output: head and tail,
	// with a marker where the middle was cut (Truncated).
	Stdout, Stderr string
	// Duration is the step's wall time.
	Duration time.Duration
	// Cwd is the shell's working directory after the step, as the jail
	// sees it (/workspace/...).
	Cwd string
	// Truncated reports that part of the output was cut.
	Truncated bool
	// TimedOut reports that the step passed its timeout and was killed.
	TimedOut bool
	// ErrorType is set when the step must end the attempt: output_limit
	// when the workspace reached its size or file cap. Empty otherwise (a
	// failing command, a timeout and a cut output are observations).
	ErrorType core.ErrorType
	// Note says what the runtime did (timeout, output cut, cap reached), in
	// a sentence for the model; empty when nothing happened.
	Note string
}

// Diff is the workspace's change against its base: the seed, or the
// snapshot taken after setup.
type Diff struct {
	// Patch is a unified diff in git's format (a/ and b/ prefixes,
	// /dev/null for added and removed files, binary files as a "GIT binary
	// patch", symlinks as mode 120000), without .git directories. Its bytes
	// are the files' and names' own (not always valid UTF-8). Applied with
	// `git apply` to the base, it gives the files of the work directory
	// (empty directories aside, which git does not record).
	Patch string
	// Incomplete says why Patch is not the whole change (a path past
	// PATH_MAX, an entry the runtime could not read, git failing); empty
	// when it is.
	Incomplete string
	// Truncated reports that Patch was cut (at a file boundary where one
	// fits) to the bound given to Diff.
	Truncated bool
	// Files are the changed paths, relative to the workspace.
	Files []string
	// Removed are the FIFOs and sockets the agent made, which hold no
	// content and which git diff refuses: Diff removes them from the
	// workspace and names them here.
	Removed []string
}

// Close kills what runs in the workspace, removes it, and frees its slot.
// It is safe to call more than once.
func (w *Workspace) Close() error {
	var err error
	w.once.Do(func() {
		w.cancel()
		w.mu.Lock()
		defer w.mu.Unlock()
		w.closed = true
		w.closeRoots()
		err = removeTree(w.dir)
		<-w.m.slots
		if w.snap != nil {
			w.m.snaps.release(w.snap)
		}
	})
	return err
}

// Dir is where the workspace appears in the jail: JailDir, or the
// image's working directory.
func (w *Workspace) Dir() string { return w.jailDir }

func (w *Workspace) closeRoots() {
	if w.base != nil && w.base != w.seed {
		w.base.Close()
	}
	for _, r := range []*os.Root{w.seed, w.work, w.state} {
		if r != nil {
			r.Close()
		}
	}
}
