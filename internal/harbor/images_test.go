package harbor

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/agentdataplatform/adp/internal/core"
	"github.com/agentdataplatform/adp/internal/imagestore"
	"github.com/agentdataplatform/adp/internal/testsupport"
)

// loadWithImage is Load, where a refusal for want of workspace tasks in
// images (before wsimage) skips the rest of the test once what precedes
// it is checked.
func loadWithImage(t *testing.T, dir string, o Options) core.TaskSpec {
	t.Helper()
	spec, err := Load(t.Context(), dir, o)
	var re *RefusedError
	if errors.As(err, &re) && strings.HasSuffix(re.Field, "environment") {
		testsupport.RequireWorkspaceImages(t)
	}
	if err != nil {
		t.Fatal(err)
	}
	return spec
}

func TestArchiveName(t *testing.T) {
	root := t.TempDir()
	a := testsupport.HarborTask(t, root, "Task One", task(map[string]string{"environment/Dockerfile": "FROM debian:bookworm-slim\nRUN true\n"}))
	n1, err := ArchiveName(a)
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^harbor/Task-One-[0-9a-f]{16}\.tar$`).MatchString(n1) {
		t.Errorf("name %q", n1)
	}
	if err := core.ValidateEnvironment(core.EnvironmentArchivePrefix + n1); err != nil {
		t.Errorf("not an environment: %v", err)
	}
	n2, _ := ArchiveName(a)
	if n2 != n1 {
		t.Errorf("the same context named %q, then %q", n1, n2)
	}
	for _, change := range []func(){
		func() {
			os.WriteFile(filepath.Join(a, "environment", "Dockerfile"), []byte("FROM debian:bookworm-slim\nRUN  true\n"), 0o644)
		},
		func() { os.WriteFile(filepath.Join(a, "environment", "data.txt"), []byte("x"), 0o644) },
		func() { os.Chmod(filepath.Join(a, "environment", "data.txt"), 0o755) },
		func() { os.Symlink("data.txt", filepath.Join(a, "environment", "link")) },
	} {
		change()
		n, err := ArchiveName(a)
		if err != nil {
			t.Fatal(err)
		}
		if n == n1 {
			t.Errorf("a changed build context kept the name %q", n)
		}
		n1 = n
	}
	// Other files of the folder are not the image's.
	os.WriteFile(filepath.Join(a, "tests", "more.sh"), []byte("x"), 0o644)
	if n, _ := ArchiveName(a); n != n1 {
		t.Errorf("a test file changed the image's name")
	}
}

// TestLoadPrebuiltImage: docker_image is the task's environment, as it is
// (Harbor uses it instead of building environment/).
func TestLoadPrebuiltImage(t *testing.T) {
	dir := testsupport.HarborTask(t, t.TempDir(), "pre", task(map[string]string{
		"task.toml":              "[environment]\ndocker_image = \"ghcr.io/org/task@sha256:" + strings.Repeat("ab", 32) + "\"\n",
		"environment/Dockerfile": "FROM debian:bookworm-slim\nRUN exit 1\n",
	}))
	spec := loadWithImage(t, dir, Options{})
	if got := spec.Constraints["environment"]; got != "ghcr.io/org/task@sha256:"+strings.Repeat("ab", 32) {
		t.Errorf("environment %v", got)
	}
}

// TestLoadBuild: a Dockerfile that builds is built by the host's engine
// into an archive named by its context, once; the task's environment
// names the archive; an archive already there is used without an engine;
// a build that fails is refused, naming the Dockerfile.
func TestLoadBuild(t *testing.T) {
	engine, err := imagestore.FindEngine(t.Context(), "", nil)
	if err != nil {
		t.Skipf("no container engine to build with: %v", err)
	}
	testsupport.RequireLocalImage(t, engine, "debian:bookworm-slim")
	archives := t.TempDir()
	dir := testsupport.HarborTask(t, t.TempDir(), "built", task(map[string]string{
		"environment/Dockerfile":   "FROM debian:bookworm-slim\nCOPY greeting.txt /opt/greeting.txt\nRUN test -s /opt/greeting.txt\n",
		"environment/greeting.txt": "hi\n",
	}))
	name, err := ArchiveName(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	// Built, whatever core then says of the line.
	_, _ = Load(t.Context(), dir, Options{Images: &Images{ArchiveDir: archives, Engine: engine, Output: &out}})
	archive := filepath.Join(archives, name)
	st, err := os.Stat(archive)
	if err != nil {
		t.Fatalf("no archive after the build: %v\n%s", err, out.String())
	}
	if leftovers, _ := filepath.Glob(archive + ".tmp-*"); len(leftovers) > 0 {
		t.Errorf("temporary files left: %v", leftovers)
	}
	// The archive is an image the store imports.
	s, err := imagestore.Open(imagestore.Config{Dir: t.TempDir(), ArchiveDir: archives})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	h, err := s.Get(t.Context(), core.EnvironmentArchivePrefix+name)
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(h.Root, "opt", "greeting.txt"))
	h.Close()
	if err != nil || string(got) != "hi\n" {
		t.Errorf("the image's /opt/greeting.txt: %q, %v", got, err)
	}

	// Not built again: no engine needed, the file untouched.
	spec := loadWithImage(t, dir, Options{Images: &Images{ArchiveDir: archives}})
	if got := spec.Constraints["environment"]; got != core.EnvironmentArchivePrefix+name {
		t.Errorf("environment %v, want archive:%s", got, name)
	}
	if st2, _ := os.Stat(archive); !st2.ModTime().Equal(st.ModTime()) {
		t.Errorf("the archive was written again")
	}

	bad := testsupport.HarborTask(t, t.TempDir(), "fails", task(map[string]string{"environment/Dockerfile": "FROM debian:bookworm-slim\nRUN exit 3\n"}))
	_, err = Load(t.Context(), bad, Options{Images: &Images{ArchiveDir: archives, Engine: engine}})
	var re *RefusedError
	if !errors.As(err, &re) || re.Field != DockerfileField || !strings.Contains(re.Reason, "build") {
		t.Errorf("a failing build: %v", err)
	}
}

// TestWriteDataset: a dataset directory becomes a task file, the
// refused folders returned beside it; the file is left as it is when
// nothing changed (a dispatcher following it sees one version), and a
// dataset whose every folder is refused is an error.
func TestWriteDataset(t *testing.T) {
	ds := t.TempDir()
	testsupport.HarborTask(t, ds, "a", task(nil))
	testsupport.HarborTask(t, ds, "b", task(nil))
	testsupport.HarborTask(t, ds, "online", task(map[string]string{"task.toml": "[environment]\nallow_internet = true\n"}))
	out := t.TempDir()
	file, err := DatasetFile(out, ds)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(file, filepath.Join(out, "harbor")+"/") {
		t.Errorf("file %s", file)
	}
	n, refused, err := WriteDataset(t.Context(), ds, file, Settings{Agent: AgentNoOp}.Options(t.Context(), nil))
	if err != nil || n != 2 || len(refused) != 1 || !strings.Contains(refused[0].Error(), "allow_internet") {
		t.Fatalf("n %d refused %v err %v", n, refused, err)
	}
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], `"task_id":"a"`) || !strings.Contains(lines[0], `"actions":[{"action":"finish"}]`) {
		t.Errorf("lines:\n%s", data)
	}
	st, _ := os.Stat(file)
	old := st.ModTime().Add(-time.Hour)
	os.Chtimes(file, old, old)
	if _, _, err := WriteDataset(t.Context(), ds, file, Settings{Agent: AgentNoOp}.Options(t.Context(), nil)); err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(file); !st.ModTime().Equal(old) {
		t.Errorf("an unchanged dataset's file was written again")
	}
	bad := t.TempDir()
	testsupport.HarborTask(t, bad, "online", task(map[string]string{"task.toml": "[environment]\nallow_internet = true\n"}))
	if _, _, err := WriteDataset(t.Context(), bad, filepath.Join(out, "bad.jsonl"), Options{}); err == nil {
		t.Error("a dataset of refused folders only: no error")
	}
}
