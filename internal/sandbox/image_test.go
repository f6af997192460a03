package sandbox

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/agentdataplatform/adp/internal/imagestore"
	"github.com/agentdataplatform/adp/internal/testsupport"
	"golang.org/x/sys/unix"
)

// hostOnlyFile is a file the host has and no test image: it must not be
// visible in a jail on an image root.
const hostOnlyFile = "/usr/lib/os-release"

// testImageName is the tag of test images.
const testImageName = "test/image:1"

// testImage imports a test image (the host's python3.11 on the shared base
// layer, plus files) into a store of t and returns it as the jail's root.
func testImage(t testing.TB, config v1.Config, files ...testsupport.ImageFile) *Image {
	t.Helper()
	img, _ := testImageAndArchive(t, config, files...)
	return img
}

// testImageAndArchive is testImage, and the archive it was imported from.
// Every test image goes to one store (testImageStore), so the base layer
// is unpacked once per test binary; each image is named apart.
func testImageAndArchive(t testing.TB, config v1.Config, files ...testsupport.ImageFile) (*Image, string) {
	t.Helper()
	st := testImageStore(t)
	archive := testsupport.PythonImageArchive(t, testImageName, config, files...)
	ctx := context.Background()
	name := fmt.Sprintf("test/image:%d", testImages.Add(1))
	if _, err := st.Import(ctx, archive, name); err != nil {
		t.Fatal(err)
	}
	h, err := st.Use(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return &Image{Root: h.Root, Env: h.Config.Env, WorkingDir: h.Config.WorkingDir, User: h.Config.User}, archive
}

var (
	testImages     atomic.Int64
	testStoreOnce  sync.Once
	testStore      *imagestore.Store
	testStoreErr   error
	testStoreDir   string // made by the first test that needs it, removed by TestMain
	testStoreDirMu sync.Mutex
)

// testImageStore is the test binary's image store, in a directory the
// jail's uid can reach.
func testImageStore(t testing.TB) *imagestore.Store {
	t.Helper()
	testStoreOnce.Do(func() {
		dir, err := os.MkdirTemp("", "adp-sandbox-images-")
		if err != nil {
			testStoreErr = err
			return
		}
		testStoreDirMu.Lock()
		testStoreDir = dir
		testStoreDirMu.Unlock()
		if testStoreErr = os.Chmod(dir, 0o755); testStoreErr != nil {
			return
		}
		testStore, testStoreErr = imagestore.Open(imagestore.Config{Dir: filepath.Join(dir, "store"), MaxGB: 2})
	})
	if testStoreErr != nil {
		t.Fatal(testStoreErr)
	}
	return testStore
}

func TestMain(m *testing.M) {
	code := m.Run()
	testStoreDirMu.Lock()
	if testStore != nil {
		testStore.Close()
	}
	if testStoreDir != "" {
		os.RemoveAll(testStoreDir)
	}
	testStoreDirMu.Unlock()
	os.Exit(code)
}

func TestImageRoot(t *testing.T) {
	if _, err := os.Stat(hostOnlyFile); err != nil {
		t.Skipf("host has no %s: %v", hostOnlyFile, err)
	}
	img := testImage(t, v1.Config{
		Env:        []string{"PATH=/usr/local/bin:/usr/bin:/bin", "APP_MODE=image", "TMPDIR=/elsewhere"},
		WorkingDir: "/app",
		User:       "app",
	},
		testsupport.ImageFile{Name: "etc", Dir: true, Mode: 0o755},
		testsupport.ImageFile{Name: "etc/passwd", Body: "root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/app:/bin/sh\n"},
		testsupport.ImageFile{Name: "app", Dir: true, Mode: 0o700},
		testsupport.ImageFile{Name: "app/secret.txt", Body: "owner only\n", Mode: 0o600},
	)
	code := `import os, sys
print(os.getcwd())
print(os.environ.get("APP_MODE"), os.environ.get("TMPDIR"), os.environ.get("PATH"))
print(os.getuid(), os.getgid())
print(open("/app/secret.txt").read().strip())
print(os.path.exists("` + hostOnlyFile + `"), os.path.exists("/usr/lib/python3.11/os.py"))
print(sys.executable)
try:
    open("/app/new", "w")
    print("wrote")
except OSError as e:
    print("read-only", e.errno)
`
	forEachBackend(t, func(t *testing.T, s jailSetup) {
		res, err := s.jail.Run(context.Background(), Request{Code: code, Limits: testLimits(), Image: img})
		if err != nil {
			t.Fatal(err)
		}
		wantOK(t, res)
		want := []string{
			"/app",
			"image /tmp /usr/local/bin:/usr/bin:/bin",
			"1000 1000",
			"owner only",
			"False True",
			"/usr/bin/python3",
			"read-only 30",
		}
		got := strings.Split(strings.TrimSpace(res.Stdout), "\n")
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("stdout:\n%s\nwant:\n%s\nstderr: %s", res.Stdout, strings.Join(want, "\n"), res.Stderr)
		}
	})
}

// TestImageRootUserOutside: root inside an image maps to the jail's
// unprivileged uid outside: a file root creates in a writable bind belongs
// to 65534 on the host.
func TestImageRootUserOutside(t *testing.T) {
	img := testImage(t, v1.Config{Env: []string{"PATH=/usr/bin:/bin"}})
	forEachBackend(t, func(t *testing.T, s jailSetup) {
		out := t.TempDir()
		for d, mode := range map[string]os.FileMode{filepath.Dir(out): 0o755, out: 0o777} {
			if err := os.Chmod(d, mode); err != nil {
				t.Fatal(err)
			}
		}
		code := "import os\nprint(os.getuid())\nopen('/out/f', 'w').write('x')\n"
		res, err := s.jail.Run(context.Background(), Request{Code: code, Limits: testLimits(), Image: img,
			Binds: []Bind{{Host: out, Jail: "/out", Writable: true}}})
		if err != nil {
			t.Fatal(err)
		}
		wantOK(t, res)
		wantStdout(t, res, "0\n")
		var st unix.Stat_t
		if err := unix.Stat(filepath.Join(out, "f"), &st); err != nil {
			t.Fatal(err)
		}
		if uid, _ := s.jail.(*jail).l.owner(); st.Uid != uint32(uid) || uid == 0 {
			t.Errorf("the file of the image's root is owned by uid %d outside, want the jail's %d", st.Uid, uid)
		}
	})
}

// TestCheckImage: what makes an image unfit for a jail is found before a
// run, as the image's fault.
func TestCheckImage(t *testing.T) {
	img := testImage(t, v1.Config{},
		testsupport.ImageFile{Name: "etc", Dir: true, Mode: 0o755},
		testsupport.ImageFile{Name: "etc/passwd", Body: "app:x:1000:1000::/:/bin/sh\nbad:x:-1:0::/:/bin/sh\n"},
		testsupport.ImageFile{Name: "app", Dir: true, Mode: 0o755})
	for _, tc := range []struct {
		name string
		edit func(*Image)
		want string // "" ok, else in the error
	}{
		{"fit", func(i *Image) { i.Env = []string{"PATH=/usr/bin"}; i.WorkingDir = "/app"; i.User = "app" }, ""},
		{"default PATH, root", func(i *Image) {}, ""},
		{"numeric user", func(i *Image) { i.User = "1234:5678" }, ""},
		{"no python3 on PATH", func(i *Image) { i.Env = []string{"PATH=/opt/bin"} }, "no python3"},
		{"missing working directory", func(i *Image) { i.WorkingDir = "/nowhere" }, "working directory"},
		{"working directory a file", func(i *Image) { i.WorkingDir = "/etc/passwd" }, "working directory"},
		{"unknown user", func(i *Image) { i.User = "nobody-here" }, "no \"nobody-here\""},
		{"bad id in passwd", func(i *Image) { i.User = "bad" }, "id"},
		{"nobody", func(i *Image) { i.User = "65534" }, ""},
		{"user beyond 65534", func(i *Image) { i.User = "70000" }, "no \"70000\""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := *img
			tc.edit(&c)
			err := CheckImage(&c)
			if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Errorf("CheckImage = %v, want %q", err, tc.want)
			}
		})
	}
}

// TestNestedBindOnImage: on an image root a bind may go over a directory
// of the image further down (a workspace at the image's working directory
// /usr/src/app), writable there while the rest of /usr stays read-only;
// never through a link, onto a missing directory, beneath the jail's own
// /tmp, nor on the host's root.
func TestNestedBindOnImage(t *testing.T) {
	img := testImage(t, v1.Config{WorkingDir: "/usr/src/app"},
		testsupport.ImageFile{Name: "usr/src", Dir: true, Mode: 0o755},
		testsupport.ImageFile{Name: "usr/src/app", Dir: true, Mode: 0o755},
		testsupport.ImageFile{Name: "usr/src/app/image.txt", Body: "image\n"},
	)
	forEachBackend(t, func(t *testing.T, s jailSetup) {
		uid, gid := s.jail.Owner()
		rw := t.TempDir()
		if err := os.Chmod(filepath.Dir(rw), 0o711); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(rw, uid, gid); err != nil {
			t.Fatal(err)
		}
		res, err := s.jail.Run(context.Background(), Request{
			Code:   "pwd; echo x > out.txt && echo wrote; (echo x > /usr/src/x) 2>/dev/null && echo wrote-usr; echo end",
			Argv:   []string{"/bin/sh", jailCodeDir + "/" + scriptName},
			Binds:  []Bind{{Host: rw, Jail: "/usr/src/app", Writable: true}},
			Image:  img,
			Limits: testLimits(),
		})
		if err != nil {
			t.Fatal(err)
		}
		wantOK(t, res)
		wantStdout(t, res, "/usr/src/app\nwrote\nend\n")
		if b, err := os.ReadFile(filepath.Join(rw, "out.txt")); err != nil || string(b) != "x\n" {
			t.Errorf("out.txt on the host: %q %v", b, err)
		}
	})
	link := testImage(t, v1.Config{},
		testsupport.ImageFile{Name: "usr/src", Dir: true, Mode: 0o755},
		testsupport.ImageFile{Name: "usr/src/app", Dir: true, Mode: 0o755},
	)
	if err := os.Symlink("app", filepath.Join(link.Root, "usr/src/link")); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		img  *Image
		jail string
	}{
		{"through a link", link, "/usr/src/link"},
		{"missing", link, "/usr/src/none"},
		{"beneath /tmp", link, "/tmp/x"},
		{"dot-dot", link, "/usr/src/../src/app"},
		{"odd name", link, "/usr/src/a:b"},
		{"host root", nil, "/usr/src"},
	} {
		if err := CheckBindTarget(tc.img, tc.jail); err == nil {
			t.Errorf("%s: CheckBindTarget(%q) accepted it", tc.name, tc.jail)
		}
		if _, err := specOf(Request{Image: tc.img, Binds: []Bind{{Host: dir, Jail: tc.jail}}}, interpreter{path: DefaultPythonPath}); err == nil {
			t.Errorf("%s: a bind at %q was accepted", tc.name, tc.jail)
		}
	}
	if err := CheckBindTarget(link, "/usr/src/app"); err != nil {
		t.Errorf("CheckBindTarget(/usr/src/app): %v", err)
	}
}

// TestWritableImageArgs: an Image marked Writable has its entries bound
// read-write by both backends (the caller's overlay), read-only otherwise.
func TestWritableImageArgs(t *testing.T) {
	spec := runSpec{argv: []string{"/bin/sh"}, dir: "/", image: &imageSpec{root: "/r", entries: []rootEntry{{path: "/usr"}, {path: "/bin", target: "usr/bin"}}}}
	for _, writable := range []bool{false, true} {
		spec.image.writable = writable
		b := (&bwrapJail{bwrap: "bwrap"}).bwrapArgs(DefaultLimits(), spec, "id")
		n := nsjailArgs("nsjail", nsjailPolicy{flags: []string{}}, cgroupSupport{}, DefaultLimits(), spec, "id", false)
		bw, nj := strings.Join(b, " "), strings.Join(n, " ")
		wantB, wantN := "--ro-bind /r/usr /usr", "--bindmount_ro /r/usr:/usr"
		if writable {
			wantB, wantN = "--bind /r/usr /usr", "--bindmount /r/usr:/usr"
		}
		if !strings.Contains(bw, wantB) || !strings.Contains(nj, wantN) || !strings.Contains(bw, "--symlink usr/bin /bin") {
			t.Errorf("writable %v: bwrap %q, nsjail %q", writable, bw, nj)
		}
	}
}
