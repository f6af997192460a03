package deploytest

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
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

// grafana11Panels are the panel types Grafana 11 ships (core panels).
// AngularJS panels are off by default in Grafana 11 (graph, singlestat,
// table-old and the old grafana-*-panel plugins no longer load), and no
// plugin is installed by docker-compose.yml.
var grafana11Panels = []string{
	"alertlist", "annolist", "barchart", "bargauge", "candlestick", "canvas", "dashlist",
	"datagrid", "flamegraph", "gauge", "geomap", "heatmap", "histogram", "logs", "news",
	"nodeGraph", "piechart", "row", "stat", "state-timeline", "status-history", "table",
	"text", "timeseries", "traces", "trend", "xychart",
}

// grafanaRemovedPanels are panel types a dashboard written for an older
// Grafana may name that Grafana 11 does not load.
var grafanaRemovedPanels = []string{
	"graph", "singlestat", "table-old", "grafana-singlestat-panel", "grafana-piechart-panel",
	"grafana-worldmap-panel", "grafana-clock-panel", "grafana-polystat-panel",
}

// provisionedDatasource returns the uid and type of the provisioned
// datasource (TestGrafanaProvisioning checks there is exactly one).
func provisionedDatasource(t *testing.T) (uid, typ string) {
	t.Helper()
	var ds struct {
		Datasources []struct {
			UID  string `yaml:"uid"`
			Type string `yaml:"type"`
		} `yaml:"datasources"`
	}
	if err := yaml.Unmarshal([]byte(readRepoFile(t, "configs/grafana/provisioning/datasources/prometheus.yml")), &ds); err != nil {
		t.Fatal(err)
	}
	if len(ds.Datasources) != 1 {
		t.Fatalf("datasources = %+v", ds)
	}
	return ds.Datasources[0].UID, ds.Datasources[0].Type
}

// What Grafana 11 needs to load the provisioned dashboard as it is meant:
// every panel and query bound to the provisioned datasource (through the
// datasource variable, whose default is that uid), panel types it still
// ships, a schema version it migrates from, and identifiers it accepts.
func TestDashboardLoadsInGrafana11(t *testing.T) {
	t.Parallel()
	uid, typ := provisionedDatasource(t)
	if !regexp.MustCompile(`^[a-zA-Z0-9_-]{1,40}$`).MatchString(uid) {
		t.Errorf("datasource uid %q: Grafana wants at most 40 of [a-zA-Z0-9_-]", uid)
	}
	raw := readRepoFile(t, dashboardFile)
	var doc map[string]any
	if err := json.Unmarshal([]byte(raw), &doc); err != nil {
		t.Fatal(err)
	}
	d := loadRepoDashboard(t)
	if !regexp.MustCompile(`^[a-zA-Z0-9_-]{1,40}$`).MatchString(d.UID) {
		t.Errorf("dashboard uid %q: Grafana wants at most 40 of [a-zA-Z0-9_-]", d.UID)
	}
	// 36 made datasource references {type, uid} objects; Grafana 11.6 writes 41.
	if d.SchemaVersion < 36 || d.SchemaVersion > 41 {
		t.Errorf("schemaVersion %d, want 36..41 (Grafana 11)", d.SchemaVersion)
	}
	if id, ok := doc["id"]; ok && id != nil {
		t.Errorf("id %v: a provisioned dashboard must have id null (Grafana assigns it)", id)
	}
	if _, ok := doc["rows"]; ok {
		t.Errorf("top-level rows: the pre-5.0 schema; use panels")
	}

	// The datasource variable defaults to the provisioned datasource.
	var vars []struct {
		Name    string `json:"name"`
		Type    string `json:"type"`
		Query   string `json:"query"`
		Current struct {
			Value any `json:"value"`
		} `json:"current"`
	}
	if b, err := json.Marshal(doc["templating"].(map[string]any)["list"]); err != nil || json.Unmarshal(b, &vars) != nil {
		t.Fatalf("templating.list: %v", err)
	}
	varOK := false
	for _, v := range vars {
		if v.Name == "datasource" && v.Type == "datasource" {
			varOK = true
			if v.Query != typ {
				t.Errorf("datasource variable query %q, the provisioned datasource is a %s", v.Query, typ)
			}
			if v.Current.Value != uid {
				t.Errorf("datasource variable defaults to %v, want the provisioned uid %q", v.Current.Value, uid)
			}
		}
	}
	if !varOK {
		t.Fatalf("no datasource variable")
	}

	bound := func(ref *DatasourceRef) bool {
		return ref != nil && ref.Type == typ && (ref.UID == "${datasource}" || ref.UID == uid)
	}
	for _, p := range d.AllPanels() {
		if !slices.Contains(grafana11Panels, p.Type) || slices.Contains(grafanaRemovedPanels, p.Type) {
			t.Errorf("panel %q: type %q does not load in Grafana 11", p.Title, p.Type)
		}
		if p.Type == "row" {
			continue
		}
		if !bound(p.Datasource) {
			t.Errorf("panel %q: datasource %+v, not the provisioned %s datasource %q", p.Title, p.Datasource, typ, uid)
		}
		refs := map[string]bool{}
		for _, tg := range p.Targets {
			if tg.RefID == "" || refs[tg.RefID] {
				t.Errorf("panel %q: refId %q empty or repeated", p.Title, tg.RefID)
			}
			refs[tg.RefID] = true
			if tg.Datasource != nil && !bound(tg.Datasource) {
				t.Errorf("panel %q query %s: datasource %+v", p.Title, tg.RefID, tg.Datasource)
			}
		}
	}
	// Annotations: only Grafana's built-in one, or the provisioned datasource.
	if a, ok := doc["annotations"].(map[string]any); ok {
		list, _ := a["list"].([]any)
		for _, item := range list {
			m, _ := item.(map[string]any)
			ds, _ := m["datasource"].(map[string]any)
			if ds["type"] == "grafana" && ds["uid"] == "-- Grafana --" {
				continue
			}
			if ds["type"] != typ || (ds["uid"] != uid && ds["uid"] != "${datasource}") {
				t.Errorf("annotation %v: datasource %v", m["name"], ds)
			}
		}
	}
}

// The provisioning files as Grafana 11 reads them: apiVersion 1, the
// datasource's access mode, and a dashboard provider that may not combine a
// fixed folder with folders from the file structure.
func TestGrafanaProvisioningGrafana11(t *testing.T) {
	t.Parallel()
	var ds struct {
		Datasources []map[string]any `yaml:"datasources"`
	}
	if err := yaml.Unmarshal([]byte(readRepoFile(t, "configs/grafana/provisioning/datasources/prometheus.yml")), &ds); err != nil {
		t.Fatal(err)
	}
	known := []string{"name", "uid", "type", "access", "url", "isDefault", "editable", "jsonData", "secureJsonData",
		"orgId", "user", "database", "basicAuth", "basicAuthUser", "withCredentials", "version"}
	for _, d := range ds.Datasources {
		for k := range d {
			if !slices.Contains(known, k) {
				t.Errorf("datasource field %q: Grafana 11 does not read it", k)
			}
		}
		if d["access"] != "proxy" {
			t.Errorf("datasource access %v, want proxy (browser access was removed in Grafana 9)", d["access"])
		}
	}
	var prov struct {
		Providers []map[string]any `yaml:"providers"`
	}
	if err := yaml.Unmarshal([]byte(readRepoFile(t, "configs/grafana/provisioning/dashboards/adp.yml")), &prov); err != nil {
		t.Fatal(err)
	}
	for _, p := range prov.Providers {
		opts, _ := p["options"].(map[string]any)
		if opts["foldersFromFilesStructure"] == true && p["folder"] != nil && p["folder"] != "" {
			t.Errorf("provider %v: folder and foldersFromFilesStructure together are refused", p["name"])
		}
		if _, ok := opts["path"].(string); !ok {
			t.Errorf("provider %v: no options.path", p["name"])
		}
	}
}
