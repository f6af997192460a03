package deploytest

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// dockerInstr is one Dockerfile instruction, continuation lines joined.
type dockerInstr struct {
	Cmd  string // upper case: FROM, RUN, COPY, ...
	Args string
}

// dockerStage is one build stage.
type dockerStage struct {
	Name     string // the AS name, lower case
	Image    string // the FROM image, global ARGs expanded
	Platform string
	Instrs   []dockerInstr
}

type dockerfile struct {
	GlobalArgs map[string]string
	Stages     []*dockerStage
}

// parseDockerfile is a small Dockerfile parser: comments, line continuations,
// global ARGs expanded in FROM lines, stages. Enough to check the
// repository's three Dockerfiles.
func parseDockerfile(text string) (*dockerfile, error) {
	df := &dockerfile{GlobalArgs: map[string]string{}}
	var logical []string
	var cur strings.Builder
	for _, line := range strings.Split(text, "\n") {
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "#") || (trimmed == "" && cur.Len() == 0) {
			continue
		}
		if strings.HasSuffix(trimmed, "\\") {
			cur.WriteString(strings.TrimSuffix(trimmed, "\\"))
			cur.WriteString(" ")
			continue
		}
		cur.WriteString(trimmed)
		logical = append(logical, cur.String())
		cur.Reset()
	}
	if cur.Len() > 0 {
		return nil, fmt.Errorf("dangling line continuation: %q", cur.String())
	}
	var stage *dockerStage
	for _, l := range logical {
		cmd, args, _ := strings.Cut(l, " ")
		cmd = strings.ToUpper(cmd)
		args = strings.TrimSpace(args)
		switch {
		case cmd == "ARG" && stage == nil:
			name, def, _ := strings.Cut(args, "=")
			df.GlobalArgs[name] = def
		case cmd == "FROM":
			stage = &dockerStage{}
			fields := strings.Fields(args)
			for len(fields) > 0 && strings.HasPrefix(fields[0], "--") {
				if p, ok := strings.CutPrefix(fields[0], "--platform="); ok {
					stage.Platform = p
				}
				fields = fields[1:]
			}
			if len(fields) == 0 {
				return nil, fmt.Errorf("FROM without image: %q", l)
			}
			stage.Image = os.Expand(fields[0], func(k string) string { return df.GlobalArgs[k] })
			if len(fields) == 3 && strings.EqualFold(fields[1], "AS") {
				stage.Name = strings.ToLower(fields[2])
			} else if len(fields) != 1 {
				return nil, fmt.Errorf("bad FROM: %q", l)
			}
			df.Stages = append(df.Stages, stage)
		case stage == nil:
			return nil, fmt.Errorf("%s before the first FROM", cmd)
		default:
			stage.Instrs = append(stage.Instrs, dockerInstr{Cmd: cmd, Args: args})
		}
	}
	if len(df.Stages) == 0 {
		return nil, fmt.Errorf("no FROM")
	}
	return df, nil
}

func (df *dockerfile) final() *dockerStage { return df.Stages[len(df.Stages)-1] }

func (df *dockerfile) stage(name string) *dockerStage {
	for _, s := range df.Stages {
		if s.Name == name {
			return s
		}
	}
	return nil
}

// all returns the arguments of every instruction cmd of the stage.
func (s *dockerStage) all(cmd string) []string {
	var out []string
	for _, in := range s.Instrs {
		if in.Cmd == cmd {
			out = append(out, in.Args)
		}
	}
	return out
}

// last returns the arguments of the stage's last instruction cmd.
func (s *dockerStage) last(cmd string) (string, bool) {
	all := s.all(cmd)
	if len(all) == 0 {
		return "", false
	}
	return all[len(all)-1], true
}

// env returns the stage's ENV settings (KEY=value forms).
func (s *dockerStage) env() map[string]string {
	env := map[string]string{}
	for _, args := range s.all("ENV") {
		for _, f := range strings.Fields(args) {
			if k, v, ok := strings.Cut(f, "="); ok {
				env[k] = v
			}
		}
	}
	return env
}

// runText is every RUN of the stage, joined.
func (s *dockerStage) runText() string { return strings.Join(s.all("RUN"), "\n") }

func loadDockerfile(t *testing.T, name string) *dockerfile {
	t.Helper()
	df, err := parseDockerfile(readRepoFile(t, name))
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return df
}

// checkImagePinned accepts image references with a version tag or a digest;
// "latest" or no tag at all is rejected.
func checkImagePinned(ref string) error {
	if ref == "" {
		return fmt.Errorf("empty image")
	}
	if strings.Contains(ref, "$") {
		return fmt.Errorf("image %q has an unresolved variable", ref)
	}
	if strings.Contains(ref, "@sha256:") {
		return nil
	}
	slash := strings.LastIndex(ref, "/")
	colon := strings.LastIndex(ref, ":")
	if colon <= slash {
		return fmt.Errorf("image %q is not pinned: no tag", ref)
	}
	repo, tag := ref[:colon], ref[colon+1:]
	if tag == "" || strings.EqualFold(tag, "latest") {
		return fmt.Errorf("image %q is not pinned to a version", ref)
	}
	// A version in the tag (7.4-bookworm), a Debian release (bookworm-slim),
	// or in the repository name (distroless/static-debian12:nonroot).
	hasDigit := regexp.MustCompile(`\d`).MatchString
	if !hasDigit(tag) && !knownCodename(tag) && !hasDigit(repo[slash+1:]) {
		return fmt.Errorf("image %q is not pinned to a version", ref)
	}
	return nil
}

// knownCodename accepts Debian release codenames (a pinned release) as tags
// such as debian:bookworm-slim.
func knownCodename(tag string) bool {
	for _, c := range []string{"bookworm", "trixie"} {
		if tag == c || strings.HasPrefix(tag, c+"-") {
			return true
		}
	}
	return false
}

func TestCheckImagePinned(t *testing.T) {
	t.Parallel()
	tests := []struct {
		ref string
		ok  bool
	}{
		{"golang:1.26.8-bookworm", true},
		{"debian:bookworm-slim", true},
		{"gcr.io/distroless/static-debian12:nonroot", true},
		{"redis@sha256:0123", true},
		{"localhost:5000/redis:7.4", true},
		{"redis", false},
		{"redis:latest", false},
		{"localhost:5000/redis", false},
		{"debian:stable-slim", false},
		{"gcr.io/distroless/static:nonroot", false},
		{"golang:${GO_VERSION}", false},
	}
	for _, tt := range tests {
		if err := checkImagePinned(tt.ref); (err == nil) != tt.ok {
			t.Errorf("checkImagePinned(%q) = %v, want ok=%v", tt.ref, err, tt.ok)
		}
	}
}

func TestDockerfiles(t *testing.T) {
	t.Parallel()
	goVersion := goDirective(t)
	for _, svc := range adpServices {
		t.Run(svc.dockerfile, func(t *testing.T) {
			t.Parallel()
			df := loadDockerfile(t, svc.dockerfile)

			if v := df.GlobalArgs["GO_VERSION"]; v != goVersion {
				t.Errorf("ARG GO_VERSION=%s, go.mod says go %s", v, goVersion)
			}
			for i, s := range df.Stages {
				if slices.ContainsFunc(df.Stages[:i], func(p *dockerStage) bool { return p.Name == s.Image }) {
					continue // FROM an earlier stage
				}
				if err := checkImagePinned(s.Image); err != nil {
					t.Error(err)
				}
			}

			build := df.stage("build")
			if build == nil {
				t.Fatalf("no stage named build")
			}
			goBuild := regexp.MustCompile(`CGO_ENABLED=0 .*go build .*-o /out/` + regexp.QuoteMeta(svc.binary) + ` \./cmd/` + regexp.QuoteMeta(svc.binary) + `\b`)
			if !goBuild.MatchString(build.runText()) {
				t.Errorf("build stage does not build ./cmd/%s statically into /out/%s", svc.binary, svc.binary)
			}

			final := df.final()
			bin := "/usr/local/bin/" + svc.binary
			if !slices.Contains(final.all("COPY"), "--from=build /out/"+svc.binary+" "+bin) {
				t.Errorf("final stage does not install %s", bin)
			}
			// The shared output tree, owned by the uid every image agrees on.
			if !slices.Contains(final.all("COPY"), "--from=build --chown=65532:65532 /out/data /data") {
				t.Errorf("final stage lacks the /data/output tree owned by 65532")
			}
			if !strings.Contains(build.runText(), "mkdir -p /out/data/output/trajectories /out/data/output/logs") {
				t.Errorf("build stage does not prepare /out/data/output/{trajectories,logs}")
			}

			user, ok := final.last("USER")
			if !ok {
				t.Errorf("no USER in the final stage")
			}
			isRoot := user == "root" || user == "0" || strings.HasPrefix(user, "0:") || strings.HasPrefix(user, "root:")
			wantRoot := svc.service == "sandbox-runtime" // nsjail needs root; jailed programs run as 65534
			if isRoot != wantRoot {
				t.Errorf("USER %q: want root=%v", user, wantRoot)
			}

			hc, ok := final.last("HEALTHCHECK")
			if !ok {
				t.Fatalf("no HEALTHCHECK")
			}
			_, cmdJSON, ok := strings.Cut(hc, " CMD ")
			var argv []string
			if !ok || json.Unmarshal([]byte(cmdJSON), &argv) != nil || !slices.Equal(argv, []string{bin, "-healthcheck"}) {
				t.Errorf("HEALTHCHECK %q, want CMD [%q, \"-healthcheck\"]", hc, bin)
			}
			ep, _ := final.last("ENTRYPOINT")
			if err := json.Unmarshal([]byte(ep), &argv); err != nil || !slices.Equal(argv, []string{bin}) {
				t.Errorf("ENTRYPOINT %q, want [%q]", ep, bin)
			}

			env := final.env()
			if env["METRICS_ADDR"] != ":"+strconv.Itoa(svc.port) {
				t.Errorf("ENV METRICS_ADDR=%q, want :%d", env["METRICS_ADDR"], svc.port)
			}
			if env["OUTPUT_DIR"] != "/data/output" {
				t.Errorf("ENV OUTPUT_DIR=%q", env["OUTPUT_DIR"])
			}
			if !slices.Contains(final.all("EXPOSE"), strconv.Itoa(svc.port)) {
				t.Errorf("EXPOSE %d missing", svc.port)
			}
		})
	}
}

// goDirective returns the go version of go.mod.
func goDirective(t *testing.T) string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^go (\S+)$`).FindStringSubmatch(readRepoFile(t, "go.mod"))
	if m == nil {
		t.Fatal("go.mod has no go directive")
	}
	return m[1]
}

func TestDockerfileSandbox(t *testing.T) {
	t.Parallel()
	df := loadDockerfile(t, "Dockerfile.sandbox")
	version := df.GlobalArgs["NSJAIL_VERSION"]
	if !regexp.MustCompile(`^\d+\.\d+(\.\d+)?$`).MatchString(version) {
		t.Errorf("NSJAIL_VERSION=%q is not an upstream release tag", version)
	}
	ns := df.stage("nsjail")
	if ns == nil {
		t.Fatal("no nsjail build stage")
	}
	run := ns.runText()
	for _, want := range []string{
		"git clone", "--branch \"${NSJAIL_VERSION}\"", "--recursive", "https://github.com/google/nsjail.git",
		"libprotobuf-dev", "libnl-route-3-dev", "protobuf-compiler", "bison", "flex",
	} {
		if !strings.Contains(run, want) {
			t.Errorf("nsjail stage lacks %q", want)
		}
	}
	final := df.final()
	run = final.runText()
	// The jail's /usr: python3, and the workspace tools (internal/workspace).
	for _, pkg := range []string{"python3", "libprotobuf32", "libnl-route-3-200", "bash", "coreutils", "grep", "sed", "findutils", "diffutils", "patch", "git"} {
		if !regexp.MustCompile(`\b` + regexp.QuoteMeta(pkg) + `\b`).MatchString(run) {
			t.Errorf("runtime stage does not install %s", pkg)
		}
	}
	// SANDBOX_JAIL: nsjail by default (the production jail), bwrap builds
	// from Debian packages alone. The nsjail stage branches on it in one RUN
	// (the classic builder builds every stage: a bwrap build must not reach
	// the clone), and installs a prebuilt NSJAIL_BINARY instead of cloning.
	if df.GlobalArgs["SANDBOX_JAIL"] != "nsjail" {
		t.Errorf("ARG SANDBOX_JAIL=%q, want nsjail by default", df.GlobalArgs["SANDBOX_JAIL"])
	}
	if v, ok := df.GlobalArgs["NSJAIL_BINARY"]; !ok || v != "" {
		t.Errorf("ARG NSJAIL_BINARY=%q (declared %v), want declared and empty (clone from GitHub) by default", v, ok)
	}
	for _, stage := range []*dockerStage{ns, final} {
		if !slices.Contains(stage.all("ARG"), "SANDBOX_JAIL") {
			t.Errorf("stage %q does not take ARG SANDBOX_JAIL", stage.Name)
		}
	}
	nsRun := ns.runText()
	for _, want := range []string{`case "${SANDBOX_JAIL}" in`, "bwrap) ;;", `if [ -n "${NSJAIL_BINARY}" ]`, "/out/nsjail"} {
		if !strings.Contains(nsRun, want) {
			t.Errorf("nsjail stage lacks %q", want)
		}
	}
	if !slices.Contains(ns.all("COPY"), "configs/nsjail/python.cfg ${NSJAIL_BINARY} /tmp/jail/") {
		t.Errorf("nsjail stage does not copy NSJAIL_BINARY from the build context: %v", ns.all("COPY"))
	}
	if !regexp.MustCompile(`bwrap\) jail_pkgs="bubblewrap"`).MatchString(run) {
		t.Errorf("runtime stage does not install bubblewrap for SANDBOX_JAIL=bwrap")
	}
	if !slices.Contains(final.all("COPY"), "--from=nsjail /out/ /usr/local/bin/") {
		t.Errorf("nsjail binary (the nsjail stage's /out) not installed")
	}
	if !slices.Contains(final.all("COPY"), "configs/nsjail/ /etc/adp/nsjail/") {
		t.Errorf("configs/nsjail/ not copied to /etc/adp/nsjail/")
	}
	env := final.env()
	if env["NSJAIL_CONFIG"] != "/etc/adp/nsjail/python.cfg" || env["PYTHON_PATH"] != "/usr/bin/python3" || env["SANDBOX_BACKEND"] != "${SANDBOX_JAIL}" {
		t.Errorf("ENV = %v", env)
	}
}

func TestDockerfileWeb(t *testing.T) {
	t.Parallel()
	df := loadDockerfile(t, "Dockerfile.web")
	version := df.GlobalArgs["PLAYWRIGHT_CORE_VERSION"]

	// The same driver version as scripts/bootstrap.sh and as playwright-go
	// (v0.MMPP.x drives playwright 1.MM.PP).
	if m := regexp.MustCompile(`(?m)^playwright_core_version=(\S+)$`).FindStringSubmatch(readRepoFile(t, "scripts/bootstrap.sh")); m == nil || m[1] != version {
		t.Errorf("PLAYWRIGHT_CORE_VERSION=%s, scripts/bootstrap.sh has %v", version, m)
	}
	if m := regexp.MustCompile(`github\.com/playwright-community/playwright-go v0\.(\d+)\.\d+`).FindStringSubmatch(readRepoFile(t, "go.mod")); m != nil {
		n, _ := strconv.Atoi(m[1])
		if want := fmt.Sprintf("1.%d.%d", n/100, n%100); want != version {
			t.Errorf("PLAYWRIGHT_CORE_VERSION=%s, playwright-go %s drives %s", version, m[0], want)
		}
	}

	driver := df.stage("driver")
	if driver == nil {
		t.Fatal("no driver stage")
	}
	run := driver.runText()
	if !strings.Contains(run, `"playwright-core@${PLAYWRIGHT_CORE_VERSION}"`) ||
		!strings.Contains(run, "ln -s ../npm/node_modules/playwright-core /opt/playwright/driver/package") {
		t.Errorf("driver stage does not lay out playwright-core as PLAYWRIGHT_DRIVER_PATH/package")
	}
	final := df.final()
	for _, s := range df.Stages {
		if strings.Contains(s.runText(), "playwright install") {
			t.Errorf("stage %q downloads browsers", s.Name)
		}
	}
	run = final.runText()
	for _, pkg := range []string{"chromium-headless-shell", "nodejs", "fonts-noto-cjk"} {
		if !regexp.MustCompile(`\s` + regexp.QuoteMeta(pkg) + `\b`).MatchString(run) {
			t.Errorf("runtime stage does not install %s", pkg)
		}
	}
	env := final.env()
	for k, v := range map[string]string{
		"CHROMIUM_PATH":          "/usr/bin/chromium-headless-shell",
		"PLAYWRIGHT_DRIVER_PATH": "/opt/playwright/driver",
		"PLAYWRIGHT_NODEJS_PATH": "/usr/bin/node",
	} {
		if env[k] != v {
			t.Errorf("ENV %s=%q, want %q", k, env[k], v)
		}
	}
}

// The build inputs the Dockerfiles name exist, and .dockerignore keeps them
// in the build context while leaving out what must not be sent.
func TestDockerBuildContext(t *testing.T) {
	t.Parallel()
	root := repoRoot(t)
	inputs := []string{"go.mod", "go.sum", "internal", "configs/nsjail/python.cfg"}
	for _, svc := range adpServices {
		inputs = append(inputs, "cmd/"+svc.binary)
	}
	ignore := parseDockerignore(readRepoFile(t, ".dockerignore"))
	for _, in := range inputs {
		if ignore.excludes(in) {
			t.Errorf(".dockerignore excludes %s, which the images need", in)
		}
	}
	for _, in := range inputs {
		t.Run(in, func(t *testing.T) {
			_, err := os.Stat(filepath.Join(root, in))
			if err != nil && strings.HasPrefix(in, "cmd/") && os.IsNotExist(err) {
				// The binaries are written by other issues; until one exists,
				// its image cannot be built, which this says rather than hides.
				t.Skipf("%s does not exist yet: its Dockerfile cannot build", in)
			}
			if err != nil {
				t.Errorf("build input %s: %v", in, err)
			}
		})
	}
	for _, out := range []string{".git", "output", "bin", ".tools", ".env"} {
		if !ignore.excludes(out) {
			t.Errorf(".dockerignore does not exclude %s", out)
		}
	}
}

type dockerignore []string

func parseDockerignore(text string) dockerignore {
	var pats dockerignore
	for _, l := range strings.Split(text, "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		pats = append(pats, l)
	}
	return pats
}

// excludes reports whether path (or a parent directory of it) is excluded:
// the last matching pattern wins, "!" re-includes. Patterns with "**" are not
// supported (the repository's file uses none).
func (d dockerignore) excludes(path string) bool {
	excluded := false
	for _, p := range d {
		neg := strings.HasPrefix(p, "!")
		p = strings.TrimPrefix(p, "!")
		p = strings.Trim(p, "/")
		for prefix := path; prefix != "."; prefix = filepath.Dir(prefix) {
			if ok, _ := filepath.Match(p, prefix); ok {
				excluded = !neg
				break
			}
		}
	}
	return excluded
}

// Dockerfile.demo: the demo site on distroless, non-root, healthchecked by
// its own binary, on the port docker-compose.yml and tasks.jsonl use.
func TestDockerfileDemo(t *testing.T) {
	t.Parallel()
	df := loadDockerfile(t, "Dockerfile.demo")
	if v := df.GlobalArgs["GO_VERSION"]; v != goDirective(t) {
		t.Errorf("ARG GO_VERSION=%s, go.mod says go %s", v, goDirective(t))
	}
	for i, s := range df.Stages {
		if slices.ContainsFunc(df.Stages[:i], func(p *dockerStage) bool { return p.Name == s.Image }) {
			continue
		}
		if err := checkImagePinned(s.Image); err != nil {
			t.Error(err)
		}
	}
	build := df.stage("build")
	if build == nil || !regexp.MustCompile(`CGO_ENABLED=0 .*go build .*-o /out/demo-site \./cmd/demo-site\b`).MatchString(build.runText()) {
		t.Fatalf("no build stage building ./cmd/demo-site statically")
	}
	final := df.final()
	if user, _ := final.last("USER"); user != "65532:65532" {
		t.Errorf("USER %q, want 65532:65532", user)
	}
	if final.env()["DEMO_ADDR"] != ":8765" || !slices.Contains(final.all("EXPOSE"), "8765") {
		t.Errorf("DEMO_ADDR %q, EXPOSE %v: want :8765", final.env()["DEMO_ADDR"], final.all("EXPOSE"))
	}
	hc, _ := final.last("HEALTHCHECK")
	if !strings.HasSuffix(hc, `CMD ["/usr/local/bin/demo-site", "-healthcheck"]`) {
		t.Errorf("HEALTHCHECK %q", hc)
	}
}
