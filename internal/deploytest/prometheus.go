package deploytest

import (
	"bytes"
	"errors"
	"fmt"
	"path/filepath"
	"text/template"
	"time"
)

// Scrape job names shared by configs/prometheus.yml, the local variant and
// the alert rules.
const (
	JobDispatcher     = "dispatcher"
	JobSandboxRuntime = "sandbox-runtime"
	JobWebRuntime     = "web-runtime"
)

// LocalPrometheus describes a Prometheus that scrapes the platform's binaries
// running as local processes (the live test of the dashboard and rules).
type LocalPrometheus struct {
	// ScrapeInterval is both the scrape and the rule evaluation interval.
	// Default 1s, so a short test gathers enough samples for rate().
	ScrapeInterval time.Duration
	// RulesFile is the rules file to load. Default: the repository's
	// configs/prometheus/alerts.yml.
	RulesFile string
	// Targets of each job, as host:port (e.g. "127.0.0.1:41234"); one entry
	// per process. A job without targets is left out.
	Dispatcher     []string
	SandboxRuntime []string
	WebRuntime     []string
}

type localJob struct {
	Name    string
	Targets []string
}

// LocalPrometheusTemplate is the template RenderLocalPrometheusConfig
// renders, relative to the repository root.
const LocalPrometheusTemplate = "configs/prometheus/prometheus.local.yml.tmpl"

// RenderLocalPrometheusConfig renders configs/prometheus/prometheus.local.yml.tmpl
// for lp: the jobs and rules of configs/prometheus.yml with static loopback
// targets. Write the result to a file and start
// `prometheus --config.file=FILE --storage.tsdb.path=DIR --web.listen-address=127.0.0.1:PORT`.
func RenderLocalPrometheusConfig(lp LocalPrometheus) ([]byte, error) {
	root, err := RepoRoot()
	if err != nil {
		return nil, err
	}
	if lp.ScrapeInterval <= 0 {
		lp.ScrapeInterval = time.Second
	}
	if lp.RulesFile == "" {
		lp.RulesFile = filepath.Join(root, "configs", "prometheus", "alerts.yml")
	}
	var jobs []localJob
	for _, j := range []localJob{
		{JobDispatcher, lp.Dispatcher},
		{JobSandboxRuntime, lp.SandboxRuntime},
		{JobWebRuntime, lp.WebRuntime},
	} {
		if len(j.Targets) > 0 {
			jobs = append(jobs, j)
		}
	}
	if len(jobs) == 0 {
		return nil, errors.New("deploytest: LocalPrometheus has no targets")
	}
	tmpl, err := template.ParseFiles(filepath.Join(root, LocalPrometheusTemplate))
	if err != nil {
		return nil, err
	}
	// Prometheus requires scrape_timeout <= scrape_interval.
	timeout := lp.ScrapeInterval * 4 / 5
	var buf bytes.Buffer
	err = tmpl.Execute(&buf, map[string]any{
		"ScrapeInterval": promDuration(lp.ScrapeInterval),
		"ScrapeTimeout":  promDuration(timeout),
		"RulesFile":      lp.RulesFile,
		"Jobs":           jobs,
	})
	if err != nil {
		return nil, fmt.Errorf("render %s: %w", LocalPrometheusTemplate, err)
	}
	return buf.Bytes(), nil
}

// promDuration formats d in Prometheus's duration syntax (milliseconds).
func promDuration(d time.Duration) string {
	return fmt.Sprintf("%dms", d.Milliseconds())
}
