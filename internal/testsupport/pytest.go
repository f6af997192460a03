package testsupport

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// The Debian package of pytest a pytest test image is built from, where
// Debian installs Python packages, and what installs it.
const (
	pytestPackage  = "python3-pytest"
	debianPyDist   = "/usr/lib/python3/dist-packages"
	bootstrapHint  = "scripts/bootstrap.sh --test installs it"
	pytestCommand  = "/usr/bin/pytest-3"
	debianPyPrefix = "python3-"
)

var pytestLayer = &hostLayer{what: "pytest", build: buildPytestLayer}

// PytestLayer is a layer holding the host's Debian pytest (python3-pytest)
// and the Python packages it depends on (its Depends, the first installed
// package of each alternative), as dpkg lists their files: the packages
// under /usr/lib/python3/dist-packages, which the base layer's python3.11
// has on sys.path, and /usr/bin/pytest, pytest-3 and py.test. On top of
// PythonBaseLayer, `python3 -m pytest` and `pytest-3` work in the jail.
// It skips t when the host lacks python3-pytest. Built once per test
// binary.
func PytestLayer(t testing.TB) v1.Layer {
	t.Helper()
	return pytestLayer.get(t)
}

// PytestImageArchive is WorkspaceImageArchive with PytestLayer between the
// tools and the files: an image whose workspace checks can run pytest.
func PytestImageArchive(t testing.TB, imageName string, config v1.Config, files ...ImageFile) string {
	t.Helper()
	return ImageArchive(t, imageName, config, []v1.Layer{PythonBaseLayer(t), ToolsLayer(t), PytestLayer(t)}, files...)
}

// DebianPythonPackage returns the files the host's Debian package pkg
// (python3-NAME) installs under /usr/lib/python3/dist-packages, by path
// relative to it, without its *.dist-info or *.egg-info metadata. It skips
// t when pkg is not installed, naming the bootstrap that installs it.
func DebianPythonPackage(t testing.TB, pkg string) map[string][]byte {
	t.Helper()
	files, err := dpkgFiles(pkg)
	if err != nil {
		t.Skipf("%v (%s)", err, bootstrapHint)
	}
	out := map[string][]byte{}
	for _, f := range files {
		rel, ok := strings.CutPrefix(f, debianPyDist+"/")
		if !ok || strings.Contains(strings.SplitN(rel, "/", 2)[0], "-info") {
			continue
		}
		st, err := os.Lstat(f)
		if err != nil || !st.Mode().IsRegular() {
			continue
		}
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatalf("reading %s of %s: %v", f, pkg, err)
		}
		out[rel] = data
	}
	if len(out) == 0 {
		t.Skipf("%s installs no files under %s (%s)", pkg, debianPyDist, bootstrapHint)
	}
	return out
}

// dpkgFiles lists the paths dpkg installed for pkg; an error when pkg is
// not installed.
func dpkgFiles(pkg string) ([]string, error) {
	st, err := exec.Command("dpkg-query", "-W", "-f=${db:Status-Status}", pkg).Output()
	if err != nil || strings.TrimSpace(string(st)) != "installed" {
		return nil, fmt.Errorf("the Debian package %s is not installed on this host", pkg)
	}
	out, err := exec.Command("dpkg-query", "-L", pkg).Output()
	if err != nil {
		return nil, fmt.Errorf("listing the files of %s: %w", pkg, err)
	}
	return strings.Fields(string(out)), nil
}

// pythonDepends are pkg's Depends that are Python packages (python3-*),
// the first installed one of each alternative; python3 itself is the
// base layer's.
func pythonDepends(pkg string) ([]string, error) {
	out, err := exec.Command("dpkg-query", "-W", "-f=${Depends}", pkg).Output()
	if err != nil {
		return nil, fmt.Errorf("reading the Depends of %s: %w", pkg, err)
	}
	var deps []string
	for _, clause := range strings.Split(string(out), ",") {
		for _, alt := range strings.Split(clause, "|") {
			name := strings.Fields(alt)
			if len(name) == 0 {
				continue
			}
			dep, _, _ := strings.Cut(name[0], ":")
			if dep == "python3" {
				break // satisfied by the base layer's interpreter
			}
			if !strings.HasPrefix(dep, debianPyPrefix) {
				continue
			}
			if _, err := dpkgFiles(dep); err == nil {
				deps = append(deps, dep)
				break
			}
		}
	}
	return deps, nil
}

func buildPytestLayer() (v1.Layer, error) {
	own, err := dpkgFiles(pytestPackage)
	if err != nil {
		return nil, fmt.Errorf("%w (%s)", err, bootstrapHint)
	}
	deps, err := pythonDepends(pytestPackage)
	if err != nil {
		return nil, err
	}
	paths := map[string]bool{}
	for _, p := range own {
		paths[p] = true
	}
	for _, dep := range deps {
		files, err := dpkgFiles(dep)
		if err != nil {
			return nil, err
		}
		for _, p := range files {
			paths[p] = true
		}
	}
	sorted := make([]string, 0, len(paths))
	for p := range paths {
		// The packages and the commands; not their docs and man pages.
		if strings.HasPrefix(p, debianPyDist+"/") || strings.HasPrefix(p, "/usr/bin/") {
			sorted = append(sorted, p)
		}
	}
	sort.Strings(sorted)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dirs := map[string]bool{}
	for _, p := range sorted {
		st, err := os.Lstat(p)
		if err != nil {
			return nil, fmt.Errorf("%s lists %s: %w", pytestPackage, p, err)
		}
		name := strings.TrimPrefix(p, "/")
		var chain []string
		for d := filepath.Dir(name); d != "." && !dirs[d]; d = filepath.Dir(d) {
			chain = append(chain, d)
		}
		for i := len(chain) - 1; i >= 0; i-- {
			dirs[chain[i]] = true
			if err := tw.WriteHeader(&tar.Header{Name: chain[i] + "/", Typeflag: tar.TypeDir, Mode: 0o755}); err != nil {
				return nil, err
			}
		}
		switch {
		case st.IsDir():
			if !dirs[name] {
				dirs[name] = true
				if err := tw.WriteHeader(&tar.Header{Name: name + "/", Typeflag: tar.TypeDir, Mode: 0o755}); err != nil {
					return nil, err
				}
			}
		case st.Mode()&os.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return nil, err
			}
			if err := tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeSymlink, Linkname: target, Mode: 0o777}); err != nil {
				return nil, err
			}
		case st.Mode().IsRegular():
			data, err := os.ReadFile(p)
			if err != nil {
				return nil, err
			}
			if err := tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: int64(st.Mode().Perm()), Size: int64(len(data)), ModTime: st.ModTime()}); err != nil {
				return nil, err
			}
			if _, err := tw.Write(data); err != nil {
				return nil, err
			}
		}
	}
	if !paths[pytestCommand] {
		return nil, fmt.Errorf("%s does not install %s", pytestPackage, pytestCommand)
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	b := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
}
