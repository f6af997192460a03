package deploytest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v4"
)

type promConfig struct {
	Global struct {
		ScrapeInterval string `yaml:"scrape_interval"`
	} `yaml:"global"`
	RuleFiles     []string           `yaml:"rule_files"`
	ScrapeConfigs []promScrapeConfig `yaml:"scrape_configs"`
}

type promScrapeConfig struct {
	JobName      string `yaml:"job_name"`
	DNSSDConfigs []struct {
		Names []string `yaml:"names"`
		Type  string   `yaml:"type"`
		Port  int      `yaml:"port"`
	} `yaml:"dns_sd_configs"`
	StaticConfigs []struct {
		Targets []string `yaml:"targets"`
	} `yaml:"static_configs"`
}

func loadPromConfig(t *testing.T, data []byte) promConfig {
	t.Helper()
	var c promConfig
	if err := yaml.Unmarshal(data, &c); err != nil {
		t.Fatal(err)
	}
	return c
}

func TestPrometheusConfig(t *testing.T) {
	t.Parallel()
	c := loadPromConfig(t, []byte(readRepoFile(t, "configs/prometheus.yml")))
	if c.Global.ScrapeInterval != "5s" {
		t.Errorf("scrape_interval = %q, want 5s", c.Global.ScrapeInterval)
	}
	if !slices.Equal(c.RuleFiles, []string{"prometheus/alerts.yml"}) {
		t.Errorf("rule_files = %v", c.RuleFiles)
	}
	// Every service of the platform is discovered through Docker DNS (one A
	// record per replica) under its compose service name and metrics port.
	p := loadCompose(t, composeFull, nil)
	for _, svc := range adpServices {
		i := slices.IndexFunc(c.ScrapeConfigs, func(sc promScrapeConfig) bool { return sc.JobName == svc.service })
		if i < 0 {
			t.Errorf("no scrape job %s", svc.service)
			continue
		}
		sc := c.ScrapeConfigs[i]
		if len(sc.StaticConfigs) > 0 {
			t.Errorf("job %s has static targets: only one replica would be scraped", svc.service)
		}
		if len(sc.DNSSDConfigs) != 1 || sc.DNSSDConfigs[0].Type != "A" ||
			!slices.Equal(sc.DNSSDConfigs[0].Names, []string{svc.service}) || sc.DNSSDConfigs[0].Port != svc.port {
			t.Errorf("job %s: dns_sd_configs = %+v, want names [%s] type A port %d", svc.service, sc.DNSSDConfigs, svc.service, svc.port)
		}
		if _, err := p.GetService(svc.service); err != nil {
			t.Errorf("job %s names no compose service: %v", svc.service, err)
		}
	}
}

func TestPromtoolCheckConfig(t *testing.T) {
	t.Parallel()
	promtool := lookTool(t, "promtool", "Debian package prometheus")
	runTool(t, repoRoot(t), promtool, "check", "config", "configs/prometheus.yml")
}

func TestPromtoolCheckRules(t *testing.T) {
	t.Parallel()
	promtool := lookTool(t, "promtool", "Debian package prometheus")
	runTool(t, repoRoot(t), promtool, "check", "rules", "configs/prometheus/alerts.yml")
}

// The alerts' behaviour: configs/prometheus/alerts_test.yml feeds synthetic
// series and states which alert fires when, with what labels and text.
func TestPromtoolTestRules(t *testing.T) {
	t.Parallel()
	promtool := lookTool(t, "promtool", "Debian package prometheus")
	runTool(t, filepath.Join(repoRoot(t), "configs", "prometheus"), promtool, "test", "rules", "alerts_test.yml")
}

func TestAlertRules(t *testing.T) {
	t.Parallel()
	rules, err := LoadAlertRules(filepath.Join(repoRoot(t), "configs", "prometheus", "alerts.yml"))
	if err != nil {
		t.Fatal(err)
	}
	// The list: a runtime down, dead-letter stream growing, pending
	// lag above a threshold, failure rate above a threshold, no progress
	// while queues are non-empty.
	want := []string{"ADPTargetDown", "ADPNoReplicaUp", "ADPDeadLetterGrowing", "ADPPendingLagHigh", "ADPTaskFailureRateHigh", "ADPNoProgress"}
	var names []string
	for _, r := range rules {
		names = append(names, r.Alert)
		for _, name := range SeriesNames(r.Expr) {
			if !KnownSeries(name) {
				t.Errorf("alert %s uses %q, which no target exports (deploytest.Metrics)", r.Alert, name)
			}
		}
		if r.Labels["severity"] != "warning" && r.Labels["severity"] != "critical" {
			t.Errorf("alert %s: severity %q", r.Alert, r.Labels["severity"])
		}
		if r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
			t.Errorf("alert %s lacks a summary or description", r.Alert)
		}
	}
	for _, w := range want {
		if !slices.Contains(names, w) {
			t.Errorf("no alert %s", w)
		}
	}
	if len(names) != len(slices.Compact(slices.Sorted(slices.Values(names)))) {
		t.Errorf("duplicate alert names: %v", names)
	}
}

// The test variant for local processes renders to a valid configuration with
// the same jobs and rules.
func TestLocalPrometheusConfig(t *testing.T) {
	t.Parallel()
	data, err := RenderLocalPrometheusConfig(LocalPrometheus{
		Dispatcher:     []string{"127.0.0.1:41000"},
		SandboxRuntime: []string{"127.0.0.1:41001", "127.0.0.1:41003"},
		WebRuntime:     []string{"127.0.0.1:41002"},
	})
	if err != nil {
		t.Fatal(err)
	}
	c := loadPromConfig(t, data)
	got := map[string][]string{}
	for _, sc := range c.ScrapeConfigs {
		for _, st := range sc.StaticConfigs {
			got[sc.JobName] = append(got[sc.JobName], st.Targets...)
		}
	}
	want := map[string][]string{
		JobDispatcher:     {"127.0.0.1:41000"},
		JobSandboxRuntime: {"127.0.0.1:41001", "127.0.0.1:41003"},
		JobWebRuntime:     {"127.0.0.1:41002"},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("targets = %v, want %v\n%s", got, want, data)
	}
	if len(c.RuleFiles) != 1 || !filepath.IsAbs(c.RuleFiles[0]) || !strings.HasSuffix(c.RuleFiles[0], "configs/prometheus/alerts.yml") {
		t.Errorf("rule_files = %v", c.RuleFiles)
	}

	// Without a web runtime the job is left out rather than left empty.
	data2, err := RenderLocalPrometheusConfig(LocalPrometheus{Dispatcher: []string{"127.0.0.1:1"}})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(loadPromConfig(t, data2).ScrapeConfigs); n != 1 {
		t.Errorf("%d scrape configs, want 1:\n%s", n, data2)
	}
	if _, err := RenderLocalPrometheusConfig(LocalPrometheus{}); err == nil {
		t.Errorf("no targets: want an error")
	}

	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool not installed (Debian package prometheus): rendered config not checked")
	}
	file := filepath.Join(t.TempDir(), "prometheus.yml")
	if err := os.WriteFile(file, data, 0o644); err != nil {
		t.Fatal(err)
	}
	runTool(t, repoRoot(t), promtool, "check", "config", file)
}
