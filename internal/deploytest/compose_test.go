package deploytest

import (
	"context"
	"io/fs"
	"maps"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
	"go.yaml.in/yaml/v4"

	"github.com/agentdataplatform/adp/internal/core"
	"github.com/agentdataplatform/adp/internal/demosite"
)

const (
	composeFull    = "docker-compose.yml"
	composeMinimal = "docker-compose.minimal.yml"
)

// The services built from this repository, with the Dockerfile, binary and
// metrics port of each.
var adpServices = []struct {
	service, dockerfile, binary string
	port                        int
}{
	{"dispatcher", "Dockerfile.dispatcher", "dispatcher", 8000},
	{"sandbox-runtime", "Dockerfile.sandbox", "sandbox-runtime", 8001},
	{"web-runtime", "Dockerfile.web", "web-runtime", 8002},
}

// scalableServices may run as many replicas (docker compose up --scale).
var scalableServices = []string{"sandbox-runtime", "web-runtime"}

// loadCompose loads a compose file the way `docker compose` does, with env as
// the only environment (the test's own environment must not leak in).
func loadCompose(t *testing.T, file string, env map[string]string, profiles ...string) *types.Project {
	t.Helper()
	return loadComposeFiles(t, []string{file}, env, profiles...)
}

// loadComposeFiles loads a compose file with overrides (-f a -f b).
func loadComposeFiles(t *testing.T, files []string, env map[string]string, profiles ...string) *types.Project {
	t.Helper()
	root := repoRoot(t)
	var envList []string
	for k, v := range env {
		envList = append(envList, k+"="+v)
	}
	var paths []string
	for _, f := range files {
		paths = append(paths, filepath.Join(root, f))
	}
	file := strings.Join(files, " + ")
	opts, err := cli.NewProjectOptions(
		paths,
		cli.WithWorkingDirectory(root),
		cli.WithEnv(envList),
		cli.WithProfiles(profiles),
		cli.WithResolvedPaths(true),
	)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, err := opts.LoadProject(ctx)
	if err != nil {
		t.Fatalf("load %s: %v", file, err)
	}
	return p
}

func service(t *testing.T, p *types.Project, name string) types.ServiceConfig {
	t.Helper()
	s, err := p.GetService(name)
	if err != nil {
		t.Fatalf("%s: %v", p.ComposeFiles, err)
	}
	return s
}

func envValue(s types.ServiceConfig, key string) (string, bool) {
	v, ok := s.Environment[key]
	if !ok || v == nil {
		return "", false
	}
	return *v, true
}

func TestComposeServices(t *testing.T) {
	t.Parallel()
	tests := []struct {
		file     string
		enabled  []string
		disabled []string
	}{
		{composeFull, []string{"demo-site", "dispatcher", "grafana", "prometheus", "redis", "sandbox-runtime", "web-runtime"}, []string{"vllm"}},
		{composeMinimal, []string{"dispatcher", "redis", "sandbox-runtime"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			t.Parallel()
			p := loadCompose(t, tt.file, nil)
			if got := p.ServiceNames(); !slices.Equal(got, tt.enabled) {
				t.Errorf("services = %v, want exactly %v", got, tt.enabled)
			}
			if got := p.DisabledServiceNames(); !slices.Equal(sorted(got), tt.disabled) {
				t.Errorf("services behind a profile = %v, want %v", got, tt.disabled)
			}
		})
	}
}

// yamlDiff shows the lines of a's YAML missing from b's ("-") and the other
// way round ("+").
func yamlDiff(t *testing.T, a, b any) string {
	t.Helper()
	lines := func(v any) []string {
		data, err := yaml.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return strings.Split(string(data), "\n")
	}
	la, lb := lines(a), lines(b)
	var out []string
	for _, l := range la {
		if !slices.Contains(lb, l) {
			out = append(out, "- "+l)
		}
	}
	for _, l := range lb {
		if !slices.Contains(la, l) {
			out = append(out, "+ "+l)
		}
	}
	return strings.Join(out, "\n")
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

// The minimal file repeats redis, dispatcher and sandbox-runtime: they must
// not drift apart.
func TestComposeMinimalMatchesFull(t *testing.T) {
	t.Parallel()
	full := loadCompose(t, composeFull, nil)
	minimal := loadCompose(t, composeMinimal, nil)
	for _, name := range minimal.ServiceNames() {
		a, b := service(t, full, name), service(t, minimal, name)
		if !reflect.DeepEqual(a, b) {
			t.Errorf("service %s differs between %s and %s:\n%s", name, composeFull, composeMinimal, yamlDiff(t, a, b))
		}
	}
	if name := minimal.Name; name != full.Name {
		t.Errorf("project name %q in %s, %q in %s: volumes would not be shared", name, composeMinimal, full.Name, composeFull)
	}
}

// Every service of both files (vllm included): restart policy, log rotation,
// a healthcheck, and dependencies that wait for health.
func TestComposeEveryService(t *testing.T) {
	t.Parallel()
	for _, file := range []string{composeFull, composeMinimal} {
		p := loadCompose(t, file, nil, "llm")
		for _, name := range p.ServiceNames() {
			t.Run(file+"/"+name, func(t *testing.T) {
				t.Parallel()
				s := service(t, p, name)
				if s.Restart != types.RestartPolicyUnlessStopped && s.Restart != types.RestartPolicyAlways {
					t.Errorf("restart = %q, want unless-stopped", s.Restart)
				}
				if s.Logging == nil || s.Logging.Driver != "json-file" ||
					s.Logging.Options["max-size"] != "100m" || s.Logging.Options["max-file"] != "3" {
					t.Errorf("logging = %+v, want json-file with max-size 100m, max-file 3", s.Logging)
				}
				if s.HealthCheck == nil || s.HealthCheck.Disable || len(s.HealthCheck.Test) == 0 {
					t.Errorf("no healthcheck")
				}
				for dep, d := range s.DependsOn {
					if d.Condition != types.ServiceConditionHealthy {
						t.Errorf("depends_on %s: condition %q, want %s", dep, d.Condition, types.ServiceConditionHealthy)
					}
				}
				if s.ContainerName != "" {
					t.Errorf("container_name %q: fixed names break --scale and parallel projects", s.ContainerName)
				}
				if s.Privileged {
					t.Errorf("privileged: no service needs it")
				}
				if s.Build == nil {
					// Third-party image: pinned to a version.
					if err := checkImagePinned(s.Image); err != nil {
						t.Error(err)
					}
				}
			})
		}
	}
}

// Scaled services: no fixed host port, container name or hostname, so
// `--scale sandbox-runtime=4 --scale web-runtime=2` can start every replica
// and each gets a unique consumer name from its container's hostname.
func TestComposeScalable(t *testing.T) {
	t.Parallel()
	for _, file := range []string{composeFull, composeMinimal} {
		p := loadCompose(t, file, nil)
		for _, name := range scalableServices {
			s, err := p.GetService(name)
			if err != nil {
				continue // web-runtime is not in the minimal file
			}
			t.Run(file+"/"+name, func(t *testing.T) {
				t.Parallel()
				for _, port := range s.Ports {
					t.Errorf("published port %+v: a second replica could not bind it; use expose", port)
				}
				if s.ContainerName != "" {
					t.Errorf("container_name %q", s.ContainerName)
				}
				if s.Hostname != "" {
					t.Errorf("hostname %q: replicas would share consumer names", s.Hostname)
				}
				if s.Deploy != nil && s.Deploy.Mode == "global" {
					t.Errorf("deploy.mode global")
				}
			})
		}
	}
}

// No two services publish the same host port.
func TestComposeHostPortsUnique(t *testing.T) {
	t.Parallel()
	p := loadCompose(t, composeFull, nil, "llm")
	seen := map[string]string{}
	for _, name := range p.ServiceNames() {
		for _, port := range service(t, p, name).Ports {
			if port.Published == "" {
				continue
			}
			key := port.HostIP + ":" + port.Published
			if other, ok := seen[key]; ok {
				t.Errorf("host port %s published by %s and %s", key, other, name)
			}
			seen[key] = name
		}
	}
}

// The platform's services: built from their Dockerfile, healthchecked with
// the binary's -healthcheck flag at the path the image installs it, on the
// metrics port Prometheus scrapes, connected to the compose Redis.
func TestComposeADPServices(t *testing.T) {
	t.Parallel()
	for _, file := range []string{composeFull, composeMinimal} {
		p := loadCompose(t, file, nil)
		for _, svc := range adpServices {
			s, err := p.GetService(svc.service)
			if err != nil {
				continue
			}
			t.Run(file+"/"+svc.service, func(t *testing.T) {
				t.Parallel()
				if s.Build == nil || s.Build.Dockerfile != svc.dockerfile {
					t.Errorf("build = %+v, want dockerfile %s", s.Build, svc.dockerfile)
				} else if s.Build.Context != repoRoot(t) {
					t.Errorf("build context %s, want the repository root", s.Build.Context)
				}
				wantTest := types.HealthCheckTest{"CMD", "/usr/local/bin/" + svc.binary, "-healthcheck"}
				if s.HealthCheck == nil || !slices.Equal(s.HealthCheck.Test, wantTest) {
					t.Errorf("healthcheck test = %v, want %v", s.HealthCheck, wantTest)
				}
				if d, ok := s.DependsOn["redis"]; !ok || d.Condition != types.ServiceConditionHealthy {
					t.Errorf("depends_on redis = %+v, want condition service_healthy", s.DependsOn)
				}
				if v, _ := envValue(s, "REDIS_URL"); v != "redis://redis:6379" {
					t.Errorf("REDIS_URL = %q", v)
				}
				if v, _ := envValue(s, "OUTPUT_DIR"); v != "/data/output" {
					t.Errorf("OUTPUT_DIR = %q", v)
				}
				if v, _ := envValue(s, "METRICS_ADDR"); v != ":"+strconv.Itoa(svc.port) {
					t.Errorf("METRICS_ADDR = %q, want :%d (configs/prometheus.yml scrapes it)", v, svc.port)
				}
				if s.User == "0" || s.User == "root" || strings.HasPrefix(s.User, "0:") {
					t.Errorf("user %q: runs as root", s.User)
				}
				if s.StopGracePeriod == nil || time.Duration(*s.StopGracePeriod) < 10*time.Second {
					t.Errorf("stop_grace_period = %v, want enough for in-flight work", s.StopGracePeriod)
				}
				// The output directory: one source shared by every service.
				out := volumeAt(s, "/data/output")
				if out == nil {
					t.Fatalf("no volume at /data/output")
				}
				if out.Type != types.VolumeTypeVolume || out.Source != "output" {
					t.Errorf("/data/output = %s %s, want the named volume output", out.Type, out.Source)
				}
				if _, ok := p.Volumes["output"]; !ok {
					t.Errorf("volume output not declared")
				}
			})
		}
	}
}

func volumeAt(s types.ServiceConfig, target string) *types.ServiceVolumeConfig {
	for i := range s.Volumes {
		if s.Volumes[i].Target == target {
			return &s.Volumes[i]
		}
	}
	return nil
}

// Runtimes need longer than Docker's 10 s default to drain: SHUTDOWN_GRACE
// plus a margin.
func TestComposeRuntimesDrain(t *testing.T) {
	t.Parallel()
	p := loadCompose(t, composeFull, nil)
	for _, name := range scalableServices {
		s := service(t, p, name)
		grace, _ := envValue(s, "SHUTDOWN_GRACE")
		g, err := time.ParseDuration(grace)
		if err != nil {
			t.Fatalf("%s: SHUTDOWN_GRACE %q: %v", name, grace, err)
		}
		if s.StopGracePeriod == nil || time.Duration(*s.StopGracePeriod) <= g {
			t.Errorf("%s: stop_grace_period %v must exceed SHUTDOWN_GRACE %v", name, s.StopGracePeriod, g)
		}
		if s.Init == nil || !*s.Init {
			t.Errorf("%s: init: true missing (orphaned processes would not be reaped)", name)
		}
	}
}

func TestComposeDispatcher(t *testing.T) {
	t.Parallel()
	s := service(t, loadCompose(t, composeFull, nil), "dispatcher")
	taskFile, _ := envValue(s, "TASK_FILE")
	v := volumeAt(s, taskFile)
	if v == nil {
		t.Fatalf("TASK_FILE %q is not mounted", taskFile)
	}
	if v.Type != types.VolumeTypeBind || v.Source != filepath.Join(repoRoot(t), "tasks.jsonl") || !v.ReadOnly {
		t.Errorf("tasks volume = %+v, want ./tasks.jsonl bound read-only", v)
	}
	if v.Bind == nil || bool(v.Bind.CreateHostPath) {
		t.Errorf("tasks bind must not create a missing host path (Docker would create a directory)")
	}
	if follow, _ := envValue(s, "DISPATCH_FOLLOW"); follow != "true" {
		t.Errorf("DISPATCH_FOLLOW = %q, want true (lines appended while the stack runs)", follow)
	}
}

func TestComposeRedis(t *testing.T) {
	t.Parallel()
	s := service(t, loadCompose(t, composeFull, nil), "redis")
	args := []string(s.Command)
	for _, want := range [][2]string{
		{"--appendonly", "yes"},
		{"--appendfsync", "everysec"},
		{"--maxmemory-policy", "noeviction"},
	} {
		i := slices.Index(args, want[0])
		if i < 0 || i+1 >= len(args) || args[i+1] != want[1] {
			t.Errorf("command %v: want %s %s", args, want[0], want[1])
		}
	}
	if slices.Contains(args, "allkeys-lru") {
		t.Errorf("allkeys-lru can evict task streams")
	}
	if !strings.Contains(strings.Join(s.HealthCheck.Test, " "), "redis-cli ping") {
		t.Errorf("healthcheck %v, want redis-cli ping", s.HealthCheck.Test)
	}
	if v := volumeAt(s, "/data"); v == nil || v.Type != types.VolumeTypeVolume {
		t.Errorf("/data (the AOF) is not on a named volume: %+v", v)
	}
}

func TestComposeWebRuntime(t *testing.T) {
	t.Parallel()
	s := service(t, loadCompose(t, composeFull, nil), "web-runtime")
	if s.ShmSize < 1<<30 {
		t.Errorf("shm_size = %d, want at least 1 GiB for Chromium", s.ShmSize)
	}
	if s.Init == nil || !*s.Init {
		t.Errorf("init: true missing (Chromium's zombies)")
	}
	if v, ok := envValue(s, "MAX_CONCURRENT"); !ok || v == "" {
		t.Errorf("MAX_CONCURRENT not set")
	}
	if s.Deploy == nil || s.Deploy.Resources.Limits == nil || s.Deploy.Resources.Limits.MemoryBytes == 0 {
		t.Errorf("no memory limit on the browser runtime")
	}
}

// SANDBOX_JAIL picks the jail at build time (the image's packages) and at
// run time (SANDBOX_BACKEND) alike; NSJAIL_BINARY reaches the build.
func TestComposeSandboxJail(t *testing.T) {
	t.Parallel()
	for _, file := range []string{composeFull, composeMinimal} {
		for _, tt := range []struct {
			env  map[string]string
			jail string
		}{
			{nil, "nsjail"},
			{map[string]string{"SANDBOX_JAIL": "bwrap"}, "bwrap"},
			{map[string]string{"SANDBOX_JAIL": "nsjail", "NSJAIL_BINARY": "prebuilt/nsjail"}, "nsjail"},
		} {
			s := service(t, loadCompose(t, file, tt.env), "sandbox-runtime")
			arg := func(k string) string {
				if v := s.Build.Args[k]; v != nil {
					return *v
				}
				return ""
			}
			if arg("SANDBOX_JAIL") != tt.jail {
				t.Errorf("%s %v: build arg SANDBOX_JAIL = %q, want %s", file, tt.env, arg("SANDBOX_JAIL"), tt.jail)
			}
			if v, _ := envValue(s, "SANDBOX_BACKEND"); v != tt.jail {
				t.Errorf("%s %v: SANDBOX_BACKEND = %q, want %s", file, tt.env, v, tt.jail)
			}
			if arg("NSJAIL_BINARY") != tt.env["NSJAIL_BINARY"] {
				t.Errorf("%s %v: build arg NSJAIL_BINARY = %q", file, tt.env, arg("NSJAIL_BINARY"))
			}
		}
	}
}

// docker-compose.bwrap.yml over either file: the sandbox built and run with
// bwrap, with the privileges of nsjail plus a writable /proc/sys and
// CAP_SYS_PTRACE, nothing else changed.
func TestComposeBwrapOverride(t *testing.T) {
	t.Parallel()
	for _, file := range []string{composeFull, composeMinimal} {
		base := service(t, loadCompose(t, file, nil), "sandbox-runtime")
		for _, tt := range []struct {
			env  map[string]string
			want string
		}{
			{nil, "systempaths=unconfined"},
			{map[string]string{"SANDBOX_PROC_OPT": "unmask=/proc/sys"}, "unmask=/proc/sys"},
		} {
			s := service(t, loadComposeFiles(t, []string{file, "docker-compose.bwrap.yml"}, tt.env), "sandbox-runtime")
			if v := s.Build.Args["SANDBOX_JAIL"]; v == nil || *v != "bwrap" {
				t.Errorf("%s + bwrap: build arg SANDBOX_JAIL = %v, want bwrap", file, v)
			}
			if v, _ := envValue(s, "SANDBOX_BACKEND"); v != "bwrap" {
				t.Errorf("%s + bwrap: SANDBOX_BACKEND = %q, want bwrap", file, v)
			}
			if want := append(slices.Clone(base.SecurityOpt), tt.want); !slices.Equal(s.SecurityOpt, want) {
				t.Errorf("%s + bwrap %v: security_opt = %v, want %v", file, tt.env, s.SecurityOpt, want)
			}
			if want := append(slices.Clone(base.CapAdd), "SYS_PTRACE"); !slices.Equal(s.CapAdd, want) || s.Privileged {
				t.Errorf("%s + bwrap: cap_add %v privileged %v, want %v (nsjail's and SYS_PTRACE)", file, s.CapAdd, s.Privileged, want)
			}
		}
	}
}

// The demo site: a service on the compose network, allowed by the web
// runtime by name, at the host and port the shipped tasks.jsonl uses.
func TestComposeDemoSite(t *testing.T) {
	t.Parallel()
	p := loadCompose(t, composeFull, nil)
	demo := service(t, p, "demo-site")
	if demo.Build == nil || demo.Build.Dockerfile != "Dockerfile.demo" {
		t.Errorf("demo-site build = %+v, want Dockerfile.demo", demo.Build)
	}
	if len(demo.Ports) != 0 {
		t.Errorf("demo-site publishes %v: it is for the compose network only", demo.Ports)
	}
	if !slices.Contains(demo.Expose, "8765") {
		t.Errorf("demo-site expose = %v, want 8765", demo.Expose)
	}
	if demo.HealthCheck == nil || !slices.Equal(demo.HealthCheck.Test, types.HealthCheckTest{"CMD", "/usr/local/bin/demo-site", "-healthcheck"}) {
		t.Errorf("demo-site healthcheck = %+v", demo.HealthCheck)
	}
	web := service(t, p, "web-runtime")
	allow, _ := envValue(web, "WEB_ALLOW_HOSTS")
	hosts := strings.Split(allow, ",")
	// Every web task of the shipped file starts on an allowed host:port.
	for i, line := range strings.Split(strings.TrimSpace(readRepoFile(t, "tasks.jsonl")), "\n") {
		task, err := core.ParseTask([]byte(line))
		if err != nil {
			t.Fatalf("tasks.jsonl line %d: %v", i+1, err)
		}
		c, err := task.Web()
		if task.Kind() != core.KindWeb || err != nil {
			continue
		}
		u, err := url.Parse(c.StartURL)
		if err != nil {
			t.Fatalf("tasks.jsonl line %d: %v", i+1, err)
		}
		if u.Host != demosite.Host+":8765" {
			t.Errorf("tasks.jsonl line %d: start_url %s, want the demo site at %s:8765 (the compose service, and make run's alias)", i+1, u, demosite.Host)
		}
		if !slices.Contains(hosts, u.Host) {
			t.Errorf("tasks.jsonl line %d: %s not in the web runtime's WEB_ALLOW_HOSTS %q", i+1, u.Host, allow)
		}
	}
	if _, err := p.GetService(demosite.Host); err != nil {
		t.Errorf("no service named %s (demosite.Host)", demosite.Host)
	}
}

func TestComposeSandboxPrivileges(t *testing.T) {
	t.Parallel()
	s := service(t, loadCompose(t, composeFull, nil), "sandbox-runtime")
	if !slices.Equal(s.CapAdd, []string{"SYS_ADMIN"}) {
		t.Errorf("cap_add = %v, want exactly [SYS_ADMIN]", s.CapAdd)
	}
	for _, opt := range []string{"seccomp=unconfined", "apparmor=unconfined"} {
		if !slices.Contains(s.SecurityOpt, opt) {
			t.Errorf("security_opt %v lacks %s", s.SecurityOpt, opt)
		}
	}
	if s.Privileged {
		t.Errorf("privileged")
	}
	if s.NetworkMode == "host" || s.Pid == "host" || s.Ipc == "host" {
		t.Errorf("host namespaces shared")
	}
	if v, _ := envValue(s, "SANDBOX_BACKEND"); v != "nsjail" {
		t.Errorf("SANDBOX_BACKEND = %q, want nsjail (the image ships no bwrap)", v)
	}
}

// vLLM runs only with --profile llm; without it the runtimes get an empty
// LLM_BASE_URL, with it they can be pointed at the vllm service.
func TestComposeLLMProfile(t *testing.T) {
	t.Parallel()
	p := loadCompose(t, composeFull, nil)
	if _, err := p.GetService("vllm"); err == nil {
		t.Errorf("vllm runs without --profile llm")
	}
	for _, name := range p.ServiceNames() {
		if s := service(t, p, name); len(s.Profiles) > 0 {
			t.Errorf("%s has profiles %v: only vllm is optional", name, s.Profiles)
		}
	}
	for _, name := range scalableServices {
		if v, ok := envValue(service(t, p, name), "LLM_BASE_URL"); !ok || v != "" {
			t.Errorf("%s: LLM_BASE_URL = %q (set %v), want empty by default", name, v, ok)
		}
	}

	const url = "http://vllm:8000/v1"
	p = loadCompose(t, composeFull, map[string]string{"LLM_BASE_URL": url}, "llm")
	vllm := service(t, p, "vllm")
	if !slices.Equal(vllm.Profiles, []string{"llm"}) {
		t.Errorf("vllm profiles = %v, want [llm]", vllm.Profiles)
	}
	served := ""
	if i := slices.Index([]string(vllm.Command), "--model"); i >= 0 && i+1 < len(vllm.Command) {
		served = vllm.Command[i+1]
	}
	for _, name := range scalableServices {
		s := service(t, p, name)
		if v, _ := envValue(s, "LLM_BASE_URL"); v != url {
			t.Errorf("%s: LLM_BASE_URL = %q, want %q", name, v, url)
		}
		if v, _ := envValue(s, "LLM_MODEL"); v != served {
			t.Errorf("%s: LLM_MODEL = %q, vllm serves %q", name, v, served)
		}
		if _, ok := s.DependsOn["vllm"]; ok {
			t.Errorf("%s depends on vllm: it must start without the profile", name)
		}
	}
	// Compose's default model is the binaries' own default, so pointing
	// LLM_BASE_URL elsewhere behaves as it does without compose.
	if def, ok := codeEnvDefault(t, "LLM_MODEL"); ok && def != served {
		t.Errorf("compose's default LLM_MODEL %q differs from the binaries' default %q", served, def)
	}
}

// codeEnvDefault finds the envDefault of an environment variable in the Go
// sources under internal/ and cmd/.
func codeEnvDefault(t *testing.T, name string) (string, bool) {
	t.Helper()
	re := regexp.MustCompile(`env:"` + regexp.QuoteMeta(name) + `" envDefault:"([^"]*)"`)
	var found []string
	for _, dir := range []string{"internal", "cmd"} {
		_ = filepath.WalkDir(filepath.Join(repoRoot(t), dir), func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return nil
			}
			data, err := os.ReadFile(path)
			if err == nil {
				for _, m := range re.FindAllStringSubmatch(string(data), -1) {
					found = append(found, m[1])
				}
			}
			return nil
		})
	}
	found = slices.Compact(slices.Sorted(slices.Values(found)))
	if len(found) > 1 {
		t.Errorf("%s has several defaults in the code: %v", name, found)
	}
	if len(found) == 0 {
		return "", false
	}
	return found[0], true
}

// ADP_OUTPUT=./output switches the output volume to a bind mount of ./output.
func TestComposeOutputBind(t *testing.T) {
	t.Parallel()
	p := loadCompose(t, composeFull, map[string]string{"ADP_OUTPUT": "./output"})
	for _, svc := range adpServices {
		v := volumeAt(service(t, p, svc.service), "/data/output")
		if v == nil || v.Type != types.VolumeTypeBind || v.Source != filepath.Join(repoRoot(t), "output") {
			t.Errorf("%s: /data/output = %+v, want a bind of ./output", svc.service, v)
		}
	}
}

// Grafana and Prometheus mount the repository's configuration where the
// provisioning and rule paths expect it.
func TestComposeMonitoringMounts(t *testing.T) {
	t.Parallel()
	root := repoRoot(t)
	p := loadCompose(t, composeFull, nil)
	want := map[string]map[string]string{
		"prometheus": {
			"/etc/prometheus/prometheus.yml": filepath.Join(root, "configs/prometheus.yml"),
			"/etc/prometheus/prometheus":     filepath.Join(root, "configs/prometheus"),
		},
		"grafana": {
			"/etc/grafana/provisioning": filepath.Join(root, "configs/grafana/provisioning"),
			"/etc/grafana/dashboards":   filepath.Join(root, "configs/grafana/dashboards"),
		},
	}
	for name, mounts := range want {
		s := service(t, p, name)
		for _, target := range slices.Sorted(maps.Keys(mounts)) {
			v := volumeAt(s, target)
			if v == nil || v.Source != mounts[target] || !v.ReadOnly {
				t.Errorf("%s: %s = %+v, want %s read-only", name, target, v, mounts[target])
			}
		}
	}
	g := service(t, p, "grafana")
	if v, _ := envValue(g, "GF_SECURITY_ADMIN_PASSWORD"); v != "admin" {
		t.Errorf("GF_SECURITY_ADMIN_PASSWORD default = %q, want admin", v)
	}
	if v, _ := envValue(g, "GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"); v != "/etc/grafana/dashboards/agent-pipeline.json" {
		t.Errorf("home dashboard = %q", v)
	}
}

// `docker compose config` (or docker-compose) accepts both files, when one
// of them is installed.
func TestDockerComposeConfig(t *testing.T) {
	t.Parallel()
	var argv []string
	if path, err := exec.LookPath("docker-compose"); err == nil {
		argv = []string{path}
	} else if path, err := exec.LookPath("docker"); err == nil &&
		exec.Command(path, "compose", "version").Run() == nil {
		argv = []string{path, "compose"}
	}
	if argv == nil {
		t.Skip("neither docker-compose nor the docker compose plugin is installed: skipping `docker compose config`; compose-go validation above still ran")
	}
	root := repoRoot(t)
	for _, file := range []string{composeFull, composeMinimal} {
		args := append(argv[1:], "-f", file, "config", "--quiet")
		runTool(t, root, argv[0], args...)
		args = append(argv[1:], "-f", file, "--profile", "llm", "config", "--quiet")
		runTool(t, root, argv[0], args...)
		args = append(argv[1:], "-f", file, "-f", "docker-compose.bwrap.yml", "config", "--quiet")
		runTool(t, root, argv[0], args...)
	}
}
