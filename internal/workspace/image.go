package workspace

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/agentdataplatform/adp/internal/sandbox"
)

// A workspace in an image (Seed.Image): every step and the check run with
// the image as the jail's root (sandbox.Image: read-only, the image's
// environment and user, 65534 outside), bash from the image's PATH, and
// the work directory bound at the image's working directory (JailDir when
// the image names none, names /, or names one that cannot be a mount
// point: see workspaceDirIn). The file tools take paths beneath that
// directory. The diff runs on the host's root as before: git on the
// runtime's copies, never the image's.
//
// # Writable root
//
// With Seed.WritableRoot the jail's root is an overlay mounted by the
// runtime on the host, per workspace:
//
//	<ws>/image/   the image's root, idmapped
//	<ws>/root/    the overlay: lower the image (and above it the post-setup
//	              layers), upper live/root-upper
//	live/root-upper/, live/root-work/  in the workspace's tmpfs
//	live/root-setup-N/  post-setup layers: the root as Snapshot found it
//	              (or the snapshot's, for a workspace over one)
//	<ws>/verify-root/  while Verify runs: the check's root
//
// The check does not run on the root the agent wrote: an agent that may
// write the root could replace the interpreter or the test framework the
// check uses. Snapshot (after setup) makes the root's present state a
// post-setup layer, and the verify step runs on a fresh overlay of the
// image and those layers alone (verifyRoot): what setup installed is
// there, what the agent wrote to the root is not (its workspace is). A
// check that needs to see the agent's changes to the system outside its
// workspace cannot be written for a writable root.
//
// The jail binds the overlay's top-level entries read-write (the jail's /
// itself stays read-only). Because the upper layer is in the workspace's
// tmpfs, what a step writes to the root (a package installed into
// /usr/local, a copy-up of a file it changed) counts against MaxBytes and
// MaxFiles as the work directory does, and fills the same tmpfs.
//
// The image store's files belong to the runtime's uid, which the jail's
// user namespace does not map: as they are, the jail could write none of
// them. The overlay's lower layer is therefore an idmapped mount of the
// image's root that shows the store's owner as the jail's outside uid
// (Jail.Owner), so in the jail every file of the image belongs to the
// jail's user (root, or the image's User), as the image's files belong to
// its user in a container. The store itself is never written (overlayfs
// copies up). All of this is done by the runtime, not the jail, so it is
// the same under nsjail and bwrap; it needs CAP_SYS_ADMIN (the tmpfs does
// too) and a kernel with idmapped mounts under overlayfs (5.19 or later).
// Without them a writable root is refused (ErrNoOverlay).

// ErrNoOverlay is returned by Open and OpenPrepared for a writable root
// where the runtime cannot mount an overlay.
var ErrNoOverlay = errors.New("workspace: a writable root needs an overlay mounted by the runtime, which needs CAP_SYS_ADMIN and idmapped mounts (Linux 5.19 or later)")

// Names of a workspace in an image (see above).
const (
	imageMountDir = "image"
	rootMergedDir = "root"
	rootUpperDir  = "root-upper"
	rootWorkDir   = "root-work"
	rootSetupDir  = "root-setup"
	verifyRootDir = "verify-root"
)

// verifyJailDirs are the other binds of a workspace's jail: the
// workspace cannot be mounted at one of them.
var verifyJailDirs = map[string]bool{jailStateDir: true, jailTestsDir: true, jailLogsDir: true, jailDiffDir: true}

// workspaceDirIn is where the workspace is mounted in a jail on img: its
// working directory when that can be a bind's target there (a top-level
// name the jail does not have, or a directory of the image further down,
// no symlink on the way), else JailDir.
//
// On a writable root only a top-level name: a directory of the image
// further down is the agent's to move away (its parent is writable), and
// the next step's jail could not mount the workspace there.
func workspaceDirIn(img *sandbox.Image) string {
	dir := img.WorkingDir
	if dir == "" || dir == "/" || verifyJailDirs[dir] || sandbox.CheckBindTarget(img, dir) != nil ||
		(img.Writable && strings.Count(dir, "/") > 1) {
		return JailDir
	}
	return dir
}

// imageBash is bash on the image's PATH (or /usr/bin:/bin when the image
// sets none), as the jail sees it. Existence is checked with Lstat beneath
// the root (a symlink is followed in the jail, where / is the image).
func imageBash(img *sandbox.Image) (string, error) {
	pathVar := "/usr/bin:/bin"
	for _, kv := range img.Env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			pathVar = v
		}
	}
	r, err := os.OpenRoot(img.Root)
	if err != nil {
		return "", fmt.Errorf("workspace: image root: %w", err)
	}
	defer r.Close()
	for _, dir := range strings.Split(pathVar, ":") {
		if !path.IsAbs(dir) {
			continue
		}
		p := path.Join(dir, "bash")
		if _, err := r.Lstat(p[1:]); err == nil {
			return p, nil
		}
	}
	return "", &SeedError{Path: "environment", Reason: fmt.Sprintf("the image has no bash on its PATH (%s): a workspace's steps run in bash", pathVar)}
}

// useImage makes img the root of the workspace's jails: writable through
// an overlay when writable is set.
func (w *Workspace) useImage(img *sandbox.Image, writable bool) error {
	if err := sandbox.CheckImageRoot(img); err != nil {
		return &SeedError{Path: "environment", Reason: err.Error()}
	}
	bash, err := imageBash(img)
	if err != nil {
		return err
	}
	root := *img
	root.Writable = false
	if writable {
		merged, err := w.mountRoot(img.Root)
		if err != nil {
			return err
		}
		root.Root, root.Writable = merged, true
	}
	w.image, w.bash, w.jailDir = &root, bash, workspaceDirIn(&root)
	return nil
}

// mountRoot mounts the writable root's overlay (see above) and returns
// its directory: the image's root idmapped, under the layers of a
// snapshot the workspace starts from.
func (w *Workspace) mountRoot(imageRoot string) (string, error) {
	if !w.tmpfs {
		return "", ErrNoOverlay
	}
	w.imageLower = imageRoot
	idmapped := w.hostPath(imageMountDir)
	mapped, err := w.m.idmaps.mount(imageRoot, idmapped, w.m.owner)
	if err != nil {
		return "", err
	}
	if mapped {
		// Kept mounted while the workspace lives: the verify step's root
		// is a fresh overlay over it (verifyRoot).
		w.imageLower = idmapped
	}
	if w.snap != nil {
		w.rootLayers = append(w.rootLayers, w.snap.rootLayers...)
	}
	merged := w.hostPath(rootMergedDir)
	if err := w.mountOverlay(w.rootLowers(), rootUpperDir, rootWorkDir, merged); err != nil {
		return "", err
	}
	return merged, nil
}

// rootLowers are the writable root's lower layers: the post-setup layers
// (newest first), then the image.
func (w *Workspace) rootLowers() []string {
	return append(w.rootLayers[:len(w.rootLayers):len(w.rootLayers)], w.imageLower)
}

// rebaseRoot makes what the root holds now a post-setup layer (Snapshot):
// the overlay is unmounted, its upper layer becomes a lower one (renamed
// within the tmpfs, never again bound into a jail nor written), and the
// overlay is mounted again with a fresh upper layer. The verify step's
// root is then the image with these layers and without what the agent
// writes after them.
func (w *Workspace) rebaseRoot() error {
	merged := w.hostPath(rootMergedDir)
	if err := unix.Unmount(merged, unix.UMOUNT_NOFOLLOW); err != nil {
		return fmt.Errorf("unmounting the writable root: %w", err)
	}
	layer := fmt.Sprintf("%s-%d", rootSetupDir, len(w.rootLayers)+1)
	if err := os.Rename(w.hostPath(liveDir, rootUpperDir), w.hostPath(liveDir, layer)); err != nil {
		return fmt.Errorf("keeping the root after setup: %w", err)
	}
	w.rootLayers = append([]string{w.hostPath(liveDir, layer)}, w.rootLayers...)
	if err := os.Remove(merged); err != nil {
		return err
	}
	return w.mountOverlay(w.rootLowers(), rootUpperDir, rootWorkDir, merged)
}

// verifyRoot mounts the verify step's root: a fresh overlay over the
// image and the post-setup layers, without the agent's writes to the
// root, which could have replaced the check's interpreter or test
// framework. Its upper layer is in the tmpfs (the check may write; it is
// dropped after). It returns the image the check runs on and how to
// unmount it; the image as it is when the root is not writable.
func (w *Workspace) verifyRoot() (*sandbox.Image, func(), error) {
	if w.image == nil || !w.image.Writable {
		return w.image, func() {}, nil
	}
	merged := w.hostPath(verifyRootDir)
	upper, work := verifyRootDir+"-upper", verifyRootDir+"-work"
	cleanup := func() {
		_ = unix.Unmount(merged, unix.MNT_DETACH|unix.UMOUNT_NOFOLLOW)
		for _, d := range []string{merged, w.hostPath(liveDir, upper), w.hostPath(liveDir, work)} {
			_ = os.RemoveAll(d)
		}
	}
	cleanup() // what an earlier check left, if it could not clean up
	if err := w.mountOverlay(w.rootLowers(), upper, work, merged); err != nil {
		cleanup()
		return nil, nil, err
	}
	img := *w.image
	img.Root = merged
	return &img, cleanup, nil
}

// mountOverlay mounts at merged (made here) an overlay of lowers (the
// first one on top) with its upper layer and work directory live/upper
// and live/work (made here when missing; upper owned by the jail's
// owner).
func (w *Workspace) mountOverlay(lowers []string, upper, work, merged string) error {
	o := w.m.owner
	up, wk := w.hostPath(liveDir, upper), w.hostPath(liveDir, work)
	for _, d := range []string{up, wk} {
		if err := os.Mkdir(d, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			return fmt.Errorf("workspace overlay: %w", err)
		}
	}
	if o.chown {
		if err := os.Chown(up, o.uid, o.gid); err != nil {
			return fmt.Errorf("workspace overlay: %w", err)
		}
	}
	if err := os.Mkdir(merged, 0o755); err != nil {
		return fmt.Errorf("workspace overlay: %w", err)
	}
	for _, p := range append([]string{up, wk}, lowers...) {
		if strings.ContainsAny(p, ",:\\\n") {
			return fmt.Errorf("workspace overlay: the path %q holds a character overlayfs cannot take (',', ':' or '\\')", p)
		}
	}
	opts := "lowerdir=" + strings.Join(lowers, ":") + ",upperdir=" + up + ",workdir=" + wk
	if err := unix.Mount("adp-overlay", merged, "overlay", unix.MS_NOSUID|unix.MS_NODEV, opts); err != nil {
		return fmt.Errorf("%w: mounting the overlay at %s: %w", ErrNoOverlay, merged, err)
	}
	return nil
}

// idmaps makes idmapped mounts of image roots. It keeps one user
// namespace per mapping (the store's owner to the jail's), made once.
type idmaps struct {
	mu  sync.Mutex
	fds map[[4]int]*os.File // {from uid, from gid, to uid, to gid}: the namespace
}

// mount mounts at dst (made here) src as o sees it: src's owner shown as
// o. mapped is false, and nothing is mounted, when src already belongs to
// o.
func (m *idmaps) mount(src, dst string, o owner) (mapped bool, err error) {
	var st unix.Stat_t
	if err := unix.Stat(src, &st); err != nil {
		return false, fmt.Errorf("workspace: image root: %w", err)
	}
	key := [4]int{int(st.Uid), int(st.Gid), o.uid, o.gid}
	if key[0] == key[2] && key[1] == key[3] {
		return false, nil
	}
	ns, err := m.userns(key)
	if err != nil {
		return false, err
	}
	if err := os.Mkdir(dst, 0o755); err != nil {
		return false, fmt.Errorf("workspace: %w", err)
	}
	fd, err := unix.OpenTree(unix.AT_FDCWD, src, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_RECURSIVE)
	if err != nil {
		return false, fmt.Errorf("%w: open_tree %s: %w", ErrNoOverlay, src, err)
	}
	defer unix.Close(fd)
	attr := &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_IDMAP | unix.MOUNT_ATTR_RDONLY | unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV, Userns_fd: uint64(ns.Fd())}
	if err := unix.MountSetattr(fd, "", unix.AT_EMPTY_PATH|unix.AT_RECURSIVE, attr); err != nil {
		return false, fmt.Errorf("%w: idmapping %s: %w", ErrNoOverlay, src, err)
	}
	if err := unix.MoveMount(fd, "", unix.AT_FDCWD, dst, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return false, fmt.Errorf("%w: move_mount to %s: %w", ErrNoOverlay, dst, err)
	}
	return true, nil
}

// userns returns a user namespace that maps key's from ids to its to ids
// (one each), made by a child that lives only until its namespace is open.
func (m *idmaps) userns(key [4]int) (*os.File, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if f := m.fds[key]; f != nil {
		return f, nil
	}
	r, wr, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer r.Close()
	defer wr.Close()
	// /bin/sh waits on its stdin, the pipe, until this end closes.
	cmd := exec.Command("/bin/sh", "-c", "read x")
	cmd.Stdin, cmd.Dir, cmd.Env = r, "/", []string{}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: key[0], HostID: key[2], Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: key[1], HostID: key[3], Size: 1}},
		Pdeathsig:   syscall.SIGKILL,
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%w: a user namespace for the idmapping: %w", ErrNoOverlay, err)
	}
	f, err := os.Open(fmt.Sprintf("/proc/%d/ns/user", cmd.Process.Pid))
	wr.Close()
	_ = cmd.Wait()
	if err != nil {
		return nil, fmt.Errorf("%w: a user namespace for the idmapping: %w", ErrNoOverlay, err)
	}
	if m.fds == nil {
		m.fds = map[[4]int]*os.File{}
	}
	m.fds[key] = f
	return f, nil
}

// close releases the namespaces.
func (m *idmaps) close() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for k, f := range m.fds {
		f.Close()
		delete(m.fds, k)
	}
}
