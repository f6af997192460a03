package deploytest

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v4"
)

const dashboardFile = "configs/grafana/dashboards/agent-pipeline.json"

func loadRepoDashboard(t *testing.T) *Dashboard {
	t.Helper()
	d, err := LoadDashboard(filepath.Join(repoRoot(t), dashboardFile))
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestDashboard(t *testing.T) {
	t.Parallel()
	d := loadRepoDashboard(t)
	if d.Title != "Agent Data Pipeline Dashboard" || d.UID == "" {
		t.Errorf("title %q uid %q", d.Title, d.UID)
	}
	if d.Refresh != "5s" {
		t.Errorf("refresh = %q, want 5s", d.Refresh)
	}
	if d.Time.From != "now-1h" || d.Time.To != "now" {
		t.Errorf("time = %+v, want the last hour", d.Time)
	}
	if len(d.Inputs) > 0 {
		t.Errorf("__inputs present: provisioning does not resolve them; use the datasource variable")
	}
	i := slices.IndexFunc(d.Templating.List, func(v Variable) bool { return v.Name == "datasource" })
	if i < 0 || d.Templating.List[i].Type != "datasource" || d.Templating.List[i].Query != "prometheus" {
		t.Fatalf("no datasource variable of type prometheus: %+v", d.Templating.List)
	}

	ids := map[int]bool{}
	for _, p := range d.AllPanels() {
		if p.Type != "timeseries" && p.Type != "stat" {
			t.Errorf("panel %q: type %q, want timeseries or stat", p.Title, p.Type)
		}
		if ids[p.ID] {
			t.Errorf("panel %q: duplicate id %d", p.Title, p.ID)
		}
		ids[p.ID] = true
		if p.GridPos.W <= 0 || p.GridPos.H <= 0 || p.GridPos.X+p.GridPos.W > 24 {
			t.Errorf("panel %q: gridPos %+v", p.Title, p.GridPos)
		}
		if p.Datasource == nil || p.Datasource.UID != "${datasource}" || p.Datasource.Type != "prometheus" {
			t.Errorf("panel %q: datasource %+v, want the ${datasource} variable", p.Title, p.Datasource)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			if strings.TrimSpace(tg.Expr) == "" {
				t.Errorf("panel %q query %s: empty expr", p.Title, tg.RefID)
			}
			if tg.Datasource != nil && tg.Datasource.UID != "${datasource}" {
				t.Errorf("panel %q query %s: datasource %+v", p.Title, tg.RefID, tg.Datasource)
			}
			// Plain PromQL: a live test can send it to Prometheus as is.
			if strings.Contains(tg.Expr, "$") {
				t.Errorf("panel %q query %s uses a Grafana variable: %s", p.Title, tg.RefID, tg.Expr)
			}
			names := SeriesNames(tg.Expr)
			if len(names) == 0 {
				t.Errorf("panel %q query %s selects no metric: %s", p.Title, tg.RefID, tg.Expr)
			}
			for _, name := range names {
				if !KnownSeries(name) {
					t.Errorf("panel %q uses %q, which no target exports (deploytest.Metrics)", p.Title, name)
				}
			}
		}
	}
}

// The panels the issue asks for, found by the metrics they query.
func TestDashboardCoverage(t *testing.T) {
	t.Parallel()
	d := loadRepoDashboard(t)
	used := map[string]bool{}
	for _, e := range d.Exprs() {
		for _, n := range SeriesNames(e.Expr) {
			if m, ok := MetricOf(n); ok {
				used[m.Name] = true
			}
		}
	}
	for _, want := range []string{
		"tasks_completed_total", // throughput by runtime/status
		"queue_size",            // queue sizes
		"tasks_failed_total",    // error rate by error_type
		"cache_hits_total",      // cache hit rate
		"cache_misses_total",    //
		"task_duration_seconds", // duration p50/p95 by runtime
		"pending_lag_seconds",   // pending lag
		"dead_letter_size",      // dead-letter size
		"active_tasks",          // active tasks
		"runtime_health",        // health per replica
		"trajectories_written_total",
		"browser_pages_in_use",
	} {
		if !used[want] {
			t.Errorf("no panel queries %s", want)
		}
	}
	var quantiles []string
	for _, e := range d.Exprs() {
		if strings.Contains(e.Expr, "task_duration_seconds_bucket") {
			quantiles = append(quantiles, e.Expr)
		}
	}
	if s := strings.Join(quantiles, "\n"); !strings.Contains(s, "histogram_quantile(0.5,") || !strings.Contains(s, "histogram_quantile(0.95,") ||
		!strings.Contains(s, "by (runtime, le)") {
		t.Errorf("no p50 and p95 of task_duration_seconds by runtime:\n%s", s)
	}
}

// Every dashboard expression is valid PromQL: promtool checks them as
// recording rules.
func TestDashboardExprsParse(t *testing.T) {
	t.Parallel()
	promtool := lookTool(t, "promtool", "Debian package prometheus")
	type rule struct {
		Record string `yaml:"record"`
		Expr   string `yaml:"expr"`
	}
	var rules []rule
	for i, e := range loadRepoDashboard(t).Exprs() {
		rules = append(rules, rule{Record: fmt.Sprintf("dashboard:expr_%d", i), Expr: e.Expr})
	}
	data, err := yaml.Marshal(map[string]any{
		"groups": []any{map[string]any{"name": "dashboard", "rules": rules}},
	})
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "dashboard-rules.yml")
	if err := os.WriteFile(file, data, 0o644); err != nil {
		t.Fatal(err)
	}
	runTool(t, repoRoot(t), promtool, "check", "rules", file)
}

func TestGrafanaProvisioning(t *testing.T) {
	t.Parallel()
	root := repoRoot(t)

	var ds struct {
		APIVersion  int `yaml:"apiVersion"`
		Datasources []struct {
			Name      string `yaml:"name"`
			UID       string `yaml:"uid"`
			Type      string `yaml:"type"`
			URL       string `yaml:"url"`
			IsDefault bool   `yaml:"isDefault"`
		} `yaml:"datasources"`
	}
	files, _ := filepath.Glob(filepath.Join(root, "configs/grafana/provisioning/datasources/*.yml"))
	if len(files) != 1 {
		t.Fatalf("datasource provisioning files: %v, want one", files)
	}
	data, _ := os.ReadFile(files[0])
	if err := yaml.Unmarshal(data, &ds); err != nil {
		t.Fatal(err)
	}
	if ds.APIVersion != 1 || len(ds.Datasources) != 1 {
		t.Fatalf("datasources = %+v", ds)
	}
	if d := ds.Datasources[0]; d.Type != "prometheus" || d.URL != "http://prometheus:9090" || !d.IsDefault || d.UID == "" {
		t.Errorf("datasource = %+v, want the default prometheus at http://prometheus:9090", d)
	}

	var prov struct {
		APIVersion int `yaml:"apiVersion"`
		Providers  []struct {
			Name    string `yaml:"name"`
			Type    string `yaml:"type"`
			Options struct {
				Path string `yaml:"path"`
			} `yaml:"options"`
		} `yaml:"providers"`
	}
	files, _ = filepath.Glob(filepath.Join(root, "configs/grafana/provisioning/dashboards/*.yml"))
	if len(files) != 1 {
		t.Fatalf("dashboard provisioning files: %v, want one", files)
	}
	data, _ = os.ReadFile(files[0])
	if err := yaml.Unmarshal(data, &prov); err != nil {
		t.Fatal(err)
	}
	if prov.APIVersion != 1 || len(prov.Providers) != 1 || prov.Providers[0].Type != "file" {
		t.Fatalf("providers = %+v", prov)
	}
	// The provider's path is where compose mounts configs/grafana/dashboards.
	p := loadCompose(t, composeFull, nil)
	g := service(t, p, "grafana")
	v := volumeAt(g, prov.Providers[0].Options.Path)
	if v == nil || v.Source != filepath.Join(root, "configs/grafana/dashboards") {
		t.Errorf("provider path %s is not the mount of configs/grafana/dashboards: %+v", prov.Providers[0].Options.Path, v)
	}
	// Only dashboards in the dashboards directory, only YAML in provisioning.
	entries, err := os.ReadDir(filepath.Join(root, "configs/grafana/dashboards"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if filepath.Ext(e.Name()) != ".json" {
			t.Errorf("configs/grafana/dashboards/%s is not a dashboard", e.Name())
			continue
		}
		raw, _ := os.ReadFile(filepath.Join(root, "configs/grafana/dashboards", e.Name()))
		if !json.Valid(raw) {
			t.Errorf("%s is not valid JSON", e.Name())
		}
	}
}
