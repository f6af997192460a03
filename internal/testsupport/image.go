package testsupport

import (
	"archive/tar"
	"bytes"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// The host's interpreter and shell, copied into the base layer of test
// images.
const (
	hostPython    = "/usr/bin/python3.11"
	hostPythonLib = "/usr/lib/python3.11"
	hostShell     = "/usr/bin/dash"
)

// pythonLibSkipped are the parts of the standard library no test image
// needs (its own test suite is most of its size).
var pythonLibSkipped = map[string]bool{"test": true, "idlelib": true, "tkinter": true, "turtledemo": true, "ensurepip": true, "lib2to3": true}

// hostLayer is a layer built from the host's files once per test binary,
// on first use; a host that cannot give it skips the tests that need it.
type hostLayer struct {
	what  string // named in the skip message
	build func() (v1.Layer, error)
	once  sync.Once
	layer v1.Layer
	err   error
}

func (h *hostLayer) get(t testing.TB) v1.Layer {
	t.Helper()
	h.once.Do(func() { h.layer, h.err = h.build() })
	if h.err != nil {
		t.Skipf("cannot build a %s layer from the host: %v", h.what, h.err)
	}
	return h.layer
}

var baseLayer = &hostLayer{what: "python base", build: buildBaseLayer}

// PythonBaseLayer is a layer holding the host's python3.11 (/usr/bin/python3
// and python3.11), its standard library without its tests, the shared
// libraries ldd lists for them and the extension modules, /bin/sh (dash), and the merged-/usr links /bin,
// /lib and /lib64. Built once per test binary, shared by every test image.
func PythonBaseLayer(t testing.TB) v1.Layer {
	t.Helper()
	return baseLayer.get(t)
}

var lddPath = regexp.MustCompile(`(?m)(/\S+) \(0x`)

func buildBaseLayer() (v1.Layer, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dirs := map[string]bool{}
	mkdirs := func(p string) error {
		var chain []string
		for d := filepath.Dir(p); d != "." && d != "/" && !dirs[d]; d = filepath.Dir(d) {
			chain = append(chain, d)
		}
		for i := len(chain) - 1; i >= 0; i-- {
			dirs[chain[i]] = true
			if err := tw.WriteHeader(&tar.Header{Name: chain[i] + "/", Typeflag: tar.TypeDir, Mode: 0o755}); err != nil {
				return err
			}
		}
		return nil
	}
	addFile := func(host, name string) error {
		data, err := os.ReadFile(host)
		if err != nil {
			return err
		}
		st, err := os.Stat(host)
		if err != nil {
			return err
		}
		if err := mkdirs(name); err != nil {
			return err
		}
		if err := tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: int64(st.Mode().Perm()), Size: int64(len(data)), ModTime: st.ModTime()}); err != nil {
			return err
		}
		_, err = tw.Write(data)
		return err
	}
	addLink := func(name, target string) error {
		if err := mkdirs(name); err != nil {
			return err
		}
		return tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeSymlink, Linkname: target, Mode: 0o777})
	}
	for _, l := range [][2]string{{"bin", "usr/bin"}, {"lib", "usr/lib"}, {"lib64", "usr/lib64"}} {
		if err := addLink(l[0], l[1]); err != nil {
			return nil, err
		}
	}
	// The interpreter, the shell and the standard library's extension
	// modules (ctypes needs libffi, ssl libssl...) with what they link.
	dynload, _ := filepath.Glob(filepath.Join(hostPythonLib, "lib-dynload", "*.so"))
	for _, bin := range append([]string{hostPython, hostShell}, dynload...) {
		out, err := exec.Command("ldd", bin).Output()
		if err != nil {
			return nil, err
		}
		libs := lddPath.FindAllStringSubmatch(string(out), -1)
		for _, m := range libs {
			// glibc dlopens libgcc_s (unwinding at pthread_exit and
			// cancellation), which ldd does not list: beside libc.
			if filepath.Base(m[1]) == "libc.so.6" {
				if gcc := filepath.Join(filepath.Dir(m[1]), "libgcc_s.so.1"); fileExists(gcc) {
					libs = append(libs, []string{"", gcc})
				}
			}
		}
		for _, m := range libs {
			real, err := filepath.EvalSymlinks(m[1])
			if err != nil {
				return nil, err
			}
			// In the image, /lib and /lib64 lead into /usr.
			name := strings.TrimPrefix(m[1], "/")
			if !strings.HasPrefix(name, "usr/") {
				name = "usr/" + name
			}
			if dirs[name] {
				continue
			}
			dirs[name] = true
			if err := addFile(real, name); err != nil {
				return nil, err
			}
		}
	}
	if err := addFile(hostPython, "usr/bin/python3.11"); err != nil {
		return nil, err
	}
	if err := addLink("usr/bin/python3", "python3.11"); err != nil {
		return nil, err
	}
	if err := addFile(hostShell, "usr/bin/sh"); err != nil {
		return nil, err
	}
	err := filepath.WalkDir(hostPythonLib, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(hostPythonLib, p)
		if d.IsDir() && pythonLibSkipped[rel] {
			return filepath.SkipDir
		}
		name := "usr/lib/python3.11/" + rel
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return addLink(name, target)
		case d.Type().IsRegular():
			return addFile(p, name)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	b := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
}

// ImageFile is a file of a test image's own layer.
type ImageFile struct {
	Name string // path in the image, without the leading /
	Body string
	Mode int64 // default 0644
	Dir  bool
}

// PythonImageArchive writes a docker-save archive of an image
// made of PythonBaseLayer and a layer of files, tagged imageName, with config's Env,
// WorkingDir and User, into a directory of t and returns its path.
func PythonImageArchive(t testing.TB, imageName string, config v1.Config, files ...ImageFile) string {
	t.Helper()
	return ImageArchive(t, imageName, config, []v1.Layer{PythonBaseLayer(t)}, files...)
}

// WorkspaceImageArchive is PythonImageArchive with ToolsLayer (bash and a
// few coreutils) between the base layer and the files: an image a
// workspace's steps can run in.
func WorkspaceImageArchive(t testing.TB, imageName string, config v1.Config, files ...ImageFile) string {
	t.Helper()
	return ImageArchive(t, imageName, config, []v1.Layer{PythonBaseLayer(t), ToolsLayer(t)}, files...)
}

// ImageArchive writes a docker-save archive of an image made of base and
// a layer of files (see PythonImageArchive).
func ImageArchive(t testing.TB, imageName string, config v1.Config, base []v1.Layer, files ...ImageFile) string {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		mode := f.Mode
		if mode == 0 {
			mode = 0o644
		}
		h := &tar.Header{Name: f.Name, Typeflag: tar.TypeReg, Mode: mode, Size: int64(len(f.Body))}
		if f.Dir {
			h = &tar.Header{Name: f.Name + "/", Typeflag: tar.TypeDir, Mode: mode}
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(tw, f.Body); err != nil && !f.Dir {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	top, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(empty.Image, append(base[:len(base):len(base)], top)...)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.Config = config
	cf.OS, cf.Architecture = "linux", runtime.GOARCH
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatal(err)
	}
	ref, err := name.ParseReference(imageName)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "image.tar")
	if err := tarball.WriteToFile(p, ref, img); err != nil {
		t.Fatal(err)
	}
	return p
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// workspaceTools are the host's programs a workspace test image carries
// besides PythonBaseLayer's: bash (a workspace's steps run in it) and
// the coreutils tests call.
var workspaceTools = []string{"/usr/bin/bash", "/usr/bin/cat", "/usr/bin/ls", "/usr/bin/mkdir", "/usr/bin/rm",
	"/usr/bin/cp", "/usr/bin/touch", "/usr/bin/head", "/usr/bin/wc", "/usr/bin/sleep", "/usr/bin/dd", "/usr/bin/id", "/usr/bin/stat", "/usr/bin/chmod", "/usr/bin/grep", "/usr/bin/env",
	"/usr/bin/seq", "/usr/bin/ln", "/usr/bin/mkfifo", "/usr/bin/find", "/usr/bin/setsid", "/usr/bin/nohup"}

var toolsLayer = &hostLayer{what: "tools", build: buildToolsLayer}

// ToolsLayer is a layer holding the host's bash and a few coreutils
// (workspaceTools) with the shared libraries ldd lists for them, under
// /usr (the base layer's /bin and /lib lead there). Built once per test
// binary.
func ToolsLayer(t testing.TB) v1.Layer {
	t.Helper()
	return toolsLayer.get(t)
}

func buildToolsLayer() (v1.Layer, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	seen := map[string]bool{}
	add := func(host, name string) error {
		if seen[name] {
			return nil
		}
		seen[name] = true
		data, err := os.ReadFile(host)
		if err != nil {
			return err
		}
		st, err := os.Stat(host)
		if err != nil {
			return err
		}
		var chain []string
		for d := filepath.Dir(name); d != "." && d != "/" && !seen[d+"/"]; d = filepath.Dir(d) {
			chain = append(chain, d)
		}
		for i := len(chain) - 1; i >= 0; i-- {
			seen[chain[i]+"/"] = true
			if err := tw.WriteHeader(&tar.Header{Name: chain[i] + "/", Typeflag: tar.TypeDir, Mode: 0o755}); err != nil {
				return err
			}
		}
		if err := tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: int64(st.Mode().Perm()), Size: int64(len(data)), ModTime: st.ModTime()}); err != nil {
			return err
		}
		_, err = tw.Write(data)
		return err
	}
	for _, bin := range workspaceTools {
		if !fileExists(bin) {
			continue
		}
		out, err := exec.Command("ldd", bin).Output()
		if err != nil {
			return nil, err
		}
		for _, m := range lddPath.FindAllStringSubmatch(string(out), -1) {
			real, err := filepath.EvalSymlinks(m[1])
			if err != nil {
				return nil, err
			}
			name := strings.TrimPrefix(m[1], "/")
			if !strings.HasPrefix(name, "usr/") {
				name = "usr/" + name
			}
			if err := add(real, name); err != nil {
				return nil, err
			}
		}
		if err := add(bin, strings.TrimPrefix(bin, "/")); err != nil {
			return nil, err
		}
	}
	if !seen["usr/bin/bash"] {
		return nil, os.ErrNotExist
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	b := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
}
