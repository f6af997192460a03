package workspace

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sort"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Setup once, k attempts from a snapshot.
//
// OpenPrepared gives each attempt of a task a workspace that starts from
// the state the task's setup left, running the setup once per key (per
// runtime): the first caller opens a workspace from the seed, runs the
// setup in it, and freezes it as the key's snapshot; every caller
// (the first included) then gets a workspace of its own over that
// snapshot. Callers that arrive while the setup runs wait for it: two
// attempts of one task arriving together run the setup once.
//
// A snapshot is the setup workspace's own tmpfs, remounted read-only:
// work/ (the files after setup: every attempt's diff base), state/ (the
// shell's exports and working directory after setup, copied into each
// attempt's) and, with a writable root, root-upper/ (what setup wrote to
// the image's root). An attempt's work directory is an overlay (lower the
// snapshot's work/, upper the attempt's own tmpfs), and its writable root
// an overlay whose lower layers are the snapshot's root-upper/ above the
// image: starting an attempt copies nothing, what it writes stays in its
// own tmpfs (and counts against its caps: a file it changes is copied up
// whole), no attempt can write the snapshot (a read-only mount, never
// bound into a jail), and one attempt's writes never reach another's.
// Where the runtime cannot mount (no CAP_SYS_ADMIN: workspaces are plain
// directories), the snapshot is a directory and each attempt starts from
// a copy of it; a writable root is refused there anyway (ErrNoOverlay).
//
// The cache holds at most Config.MaxSnapshots snapshots (each one the
// setup's workspace: at most MaxBytes of files); past it, the least
// recently used snapshots that no open workspace starts from are removed.
// A setup that fails is not kept: the callers waiting for it get its
// error (and its record), and the next caller runs it again. When the
// setup ended because its caller's ctx did (a task's timeout), the callers
// waiting run it again themselves.

// DefaultMaxSnapshots is SANDBOX_SNAPSHOTS's default: post-setup
// snapshots kept by one runtime.
const DefaultMaxSnapshots = 8

// SetupFunc runs a task's setup in w (a workspace of its own, never an
// attempt's) and returns what the caller records of it (the setup's steps
// for the trajectory): OpenPrepared hands the same record to every
// attempt. A non-nil error keeps no snapshot; OpenPrepared returns it (as
// it is, with the record) to every caller that waited for this run.
type SetupFunc func(ctx context.Context, w *Workspace) (record any, err error)

// Prepared is an attempt's workspace over a post-setup snapshot.
type Prepared struct {
	Workspace *Workspace
	// Record is what the SetupFunc returned, the same for every attempt
	// of the key.
	Record any
	// Reused reports that the setup did not run for this call: the
	// snapshot was made for an earlier one (or a concurrent one).
	Reused bool
	// SetupTime is how long the setup took when it ran (for this call or
	// the one that made the snapshot).
	SetupTime time.Duration
}

// SnapshotKey is a snapshot's key for a task: its id and a digest of what
// makes its post-setup state and its attempts' limits (the seed, the
// image, the resources and the setup commands). WORKSPACE_ROOT's seeds
// are taken as unchanging while a runtime runs: a seed directory edited
// in place needs a new task id.
func SnapshotKey(taskID string, seed Seed, setup []string) string {
	files := make([]string, 0, len(seed.Files))
	for name := range seed.Files {
		files = append(files, name)
	}
	sort.Strings(files)
	h := sha256.New()
	enc := json.NewEncoder(h)
	_ = enc.Encode(seed.From)
	for _, name := range files {
		_ = enc.Encode(name)
		_ = enc.Encode(seed.Files[name])
	}
	if img := seed.Image; img != nil {
		// The store's root is content-addressed (by the image's id).
		_ = enc.Encode([]any{img.Root, img.Env, img.WorkingDir, img.User})
	}
	_ = enc.Encode(seed.WritableRoot)
	// The attempts take the snapshot's seed: its resources are theirs.
	_ = enc.Encode(seed.Resources)
	_ = enc.Encode(setup)
	return taskID + "@" + hex.EncodeToString(h.Sum(nil)[:12])
}

// snapshot is one frozen post-setup state.
type snapshot struct {
	key  string
	dir  string // the setup workspace's directory, removed at eviction
	seed Seed   // the image and writable root the attempts take
	// work and state are the post-setup work directory and shell state;
	// rootLayers the writable root's layers above the image, newest
	// first (none without a writable root).
	work, state string
	rootLayers  []string
	// overlay: attempts are overlays over work (else copies of it).
	overlay bool
	record  any
	took    time.Duration

	// Guarded by snapshots.mu.
	refs    int
	lastUse time.Time
	gone    bool
}

// snapEntry is a key's snapshot, or the setup making it.
type snapEntry struct {
	done chan struct{} // closed when the setup ended
	snap *snapshot     // set when it succeeded
	err  error
	// record: the failed setup's record.
	record any
	// retry: the setup ended with its caller's ctx; a waiter runs it again.
	retry bool
}

// snapshots is a manager's snapshot cache.
type snapshots struct {
	mu      sync.Mutex
	max     int
	entries map[string]*snapEntry
	log     *slog.Logger
}

// OpenPrepared returns an attempt's workspace over key's snapshot, running
// setup in a workspace of seed first when there is none (see above). Like
// Open it waits for a free slot; the setup's workspace takes one while
// the setup runs. A bad seed is a *SeedError; an error of setup is
// returned as it is, with its record in Prepared.Record.
func (m *Manager) OpenPrepared(ctx context.Context, key string, seed Seed, setup SetupFunc) (Prepared, error) {
	for {
		s := m.snaps
		s.mu.Lock()
		e, ok := s.entries[key]
		ran := false
		if !ok {
			e = &snapEntry{done: make(chan struct{})}
			s.entries[key] = e
			s.mu.Unlock()
			m.runSetup(ctx, key, seed, setup, e)
			ran = true
		} else {
			s.mu.Unlock()
		}
		select {
		case <-e.done:
		case <-ctx.Done():
			return Prepared{}, fmt.Errorf("workspace: waiting for the setup of %s: %w", key, context.Cause(ctx))
		}
		if e.err != nil {
			if e.retry && !ran && ctx.Err() == nil {
				continue
			}
			return Prepared{Record: e.record}, e.err
		}
		snap := e.snap
		if !ran { // runSetup took the reference of the caller that ran it
			s.mu.Lock()
			if snap.gone {
				s.mu.Unlock()
				continue // evicted between its setup and now: make it again
			}
			snap.refs++
			snap.lastUse = time.Now()
			s.mu.Unlock()
		}

		select {
		case m.slots <- struct{}{}:
		case <-ctx.Done():
			s.release(snap)
			return Prepared{}, fmt.Errorf("workspace: waiting for a free workspace (SANDBOX_MAX_WORKSPACES=%d): %w", m.cfg.MaxOpen, context.Cause(ctx))
		}
		w, err := m.open(ctx, snap.seed, snap) // releases snap when it fails
		if err != nil {
			<-m.slots
			return Prepared{}, err
		}
		return Prepared{Workspace: w, Record: snap.record, Reused: !ran, SetupTime: snap.took}, nil
	}
}

// runSetup runs setup for e and ends it (closes e.done).
func (m *Manager) runSetup(ctx context.Context, key string, seed Seed, setup SetupFunc, e *snapEntry) {
	s := m.snaps
	defer close(e.done)
	fail := func(record any, err error) {
		e.record, e.err, e.retry = record, err, ctx.Err() != nil
		s.mu.Lock()
		delete(s.entries, key)
		s.mu.Unlock()
	}
	start := time.Now()
	w, err := m.Open(ctx, seed)
	if err != nil {
		fail(nil, err)
		return
	}
	record, err := setup(ctx, w)
	if err == nil {
		var snap *snapshot
		snap, err = w.freeze(ctx, key, seed)
		if err == nil {
			snap.record, snap.took = record, time.Since(start)
			s.mu.Lock()
			e.snap = snap
			// The caller's reference, taken before anyone may evict it.
			snap.refs, snap.lastUse = 1, time.Now()
			s.mu.Unlock()
			s.evict(key)
			return
		}
		err = fmt.Errorf("workspace: keeping the state after setup: %w", err)
	}
	_ = w.Close()
	fail(record, err)
}

// freeze ends the workspace as a snapshot: what runs in it is killed, its
// roots closed, its writable root unmounted, its tmpfs remounted
// read-only; its directory becomes the snapshot's, its slot is freed.
func (w *Workspace) freeze(ctx context.Context, key string, seed Seed) (*snapshot, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return nil, errClosed
	}
	if w.snap != nil {
		return nil, errors.New("a workspace over a snapshot cannot be one")
	}
	ctx, stop := mergeCancel(ctx, w.ctx)
	defer stop()
	// As Snapshot does: FIFOs and sockets hold nothing, and git diff
	// refuses them.
	if _, err := removeSpecialFiles(ctx, w.work); err != nil {
		return nil, err
	}
	snap := &snapshot{key: key, dir: w.dir, seed: seed,
		work: w.hostPath(liveDir, workDir), state: w.hostPath(liveDir, stateDir), overlay: w.tmpfs}
	if w.image != nil && w.image.Writable {
		if err := unix.Unmount(w.hostPath(rootMergedDir), unix.UMOUNT_NOFOLLOW); err != nil {
			return nil, fmt.Errorf("unmounting the writable root: %w", err)
		}
		snap.rootLayers = append([]string{w.hostPath(liveDir, rootUpperDir)}, w.rootLayers...)
	}
	if w.tmpfs {
		live := w.hostPath(liveDir)
		if err := unix.Mount("", live, "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV, ""); err != nil {
			return nil, fmt.Errorf("remounting the snapshot read-only: %w", err)
		}
	}
	w.closed = true
	w.cancel()
	w.closeRoots()
	w.once.Do(func() { <-w.m.slots }) // Close is a no-op from now on
	// The seed's copy and any base are not the snapshot's.
	_ = os.RemoveAll(w.hostPath(seedDir))
	_ = os.RemoveAll(w.hostPath(baseDir))
	return snap, nil
}

// fromSnapshot fills a new workspace from w.snap: its work directory an
// overlay over the snapshot's (or a copy), its state a copy, its base the
// snapshot's work directory.
func (w *Workspace) fromSnapshot(ctx context.Context, live *os.Root) error {
	snap, m := w.snap, w.m
	var err error
	if w.base, err = os.OpenRoot(snap.work); err != nil {
		return fmt.Errorf("workspace: the snapshot: %w", err)
	}
	if snap.overlay && w.tmpfs {
		merged := w.hostPath(workDir)
		if err := w.mountOverlay([]string{snap.work}, workDir, "work-ovl", merged); err != nil {
			return err
		}
		w.workHost = merged
		if w.work, err = os.OpenRoot(merged); err != nil {
			return err
		}
	} else {
		if w.work, err = live.OpenRoot(workDir); err != nil {
			return err
		}
		c := &caps{maxBytes: w.maxBytes, maxFiles: m.cfg.MaxFiles}
		if err := copyTree(ctx, w.base, w.work, m.owner, c); err != nil {
			return fmt.Errorf("workspace: copying the snapshot: %w", err)
		}
	}
	state, err := os.OpenRoot(snap.state)
	if err != nil {
		return fmt.Errorf("workspace: the snapshot's shell state: %w", err)
	}
	defer state.Close()
	for _, f := range []string{stateEnv, stateCwd} {
		data, err := readRegular(state, f, maxStateFile)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("workspace: the snapshot's shell state: %w", err)
		}
		if err := writeFile(w.state, f, data, 0o644, m.owner); err != nil {
			return err
		}
	}
	return nil
}

// release drops a workspace's reference to snap.
func (s *snapshots) release(snap *snapshot) {
	s.mu.Lock()
	snap.refs--
	snap.lastUse = time.Now()
	s.mu.Unlock()
	s.evict("")
}

// evict removes the least recently used snapshots no workspace starts
// from while there are more than max; keep is never removed.
func (s *snapshots) evict(keep string) {
	s.mu.Lock()
	var ready []*snapshot
	for _, e := range s.entries {
		if e.snap != nil {
			ready = append(ready, e.snap)
		}
	}
	var drop []*snapshot
	if over := len(ready) - s.max; over > 0 {
		sort.Slice(ready, func(i, j int) bool { return ready[i].lastUse.Before(ready[j].lastUse) })
		for _, snap := range ready {
			if over == 0 {
				break
			}
			if snap.refs > 0 || snap.key == keep {
				continue
			}
			snap.gone = true
			delete(s.entries, snap.key)
			drop = append(drop, snap)
			over--
		}
	}
	s.mu.Unlock()
	for _, snap := range drop {
		if err := removeTree(snap.dir); err != nil {
			s.log.Warn("removing a snapshot failed", "key", snap.key, "err", err)
		}
	}
}

// Snapshots is how many post-setup snapshots the manager keeps now.
func (m *Manager) Snapshots() int {
	m.snaps.mu.Lock()
	defer m.snaps.mu.Unlock()
	n := 0
	for _, e := range m.snaps.entries {
		if e.snap != nil {
			n++
		}
	}
	return n
}
