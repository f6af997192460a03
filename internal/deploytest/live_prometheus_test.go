package deploytest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/redis/go-redis/v9"

	"github.com/agentdataplatform/adp/internal/core"
	"github.com/agentdataplatform/adp/internal/demosite"
	"github.com/agentdataplatform/adp/internal/queue"
	"github.com/agentdataplatform/adp/internal/testsupport"
)

// liveScrapeInterval is the scrape and rule evaluation interval of the live
// Prometheus: short, so that rate() over the dashboard's windows has two
// samples a few seconds after the targets come up.
const liveScrapeInterval = time.Second

// liveTask is one line of the live test's task file and the outcome its
// trajectory must record (errorType "" = success).
type liveTask struct {
	line      string
	id        string
	errorType core.ErrorType
}

// The dashboard and every alert rule, evaluated by a real Prometheus that
// scrapes the three binaries running as local processes after they processed
// a small mixed batch: each expression must parse, and each dashboard query
// must return data. The metrics the binaries export are compared with
// deploytest.Metrics, the list the dashboard and rules are written against.
func TestLivePrometheus(t *testing.T) {
	t.Parallel()
	promBin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Skip("prometheus not installed: run scripts/bootstrap.sh --test (Debian package prometheus); the dashboard and alert rules were not evaluated")
	}
	env := startLiveStack(t)

	// Prometheus scrapes the three processes and evaluates the alert rules.
	prom := startPrometheus(t, promBin, LocalPrometheus{
		ScrapeInterval: liveScrapeInterval,
		Dispatcher:     []string{env.dispatcher.MetricsAddr},
		SandboxRuntime: []string{env.sandbox.MetricsAddr},
		WebRuntime:     []string{env.web.MetricsAddr},
	})
	promStart := time.Now()
	prom.waitTargetsUp(t, 3, 30*time.Second)

	// The batch: every task of the file ends with a trajectory.
	env.waitTrajectories(t, env.tasks, 60*time.Second)

	// A redelivery: a consumer that crashed holding an entry. It is added and
	// read in one transaction, so no runtime can read it first (every entry of
	// the batch has been delivered: the read gets this one); the sandbox
	// runtime reclaims it after LEASE_TTL and runs it.
	ctx := context.Background()
	redelivered := liveTask{
		line: `{"task_id":"live-redelivered","task_type":"code","description":"print a word",` +
			`"constraints":{"code":"print('again')","expected_output":"again"}}`,
		id: "live-redelivered",
	}
	var added *redis.StringCmd
	var read *redis.XStreamSliceCmd
	_, err = env.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		added = p.XAdd(ctx, &redis.XAddArgs{Stream: core.StreamCode, Values: map[string]any{queue.FieldTask: redelivered.line}})
		read = p.XReadGroup(ctx, &redis.XReadGroupArgs{
			Group: core.ConsumerGroup, Consumer: "live-crashed-consumer",
			Streams: []string{core.StreamCode, ">"}, Count: 1, Block: -1,
		})
		return nil
	})
	if err != nil {
		t.Fatalf("add and claim an entry for a crashed consumer: %v", err)
	}
	if got := read.Val(); len(got) != 1 || len(got[0].Messages) != 1 || got[0].Messages[0].ID != added.Val() {
		t.Fatalf("the crashed consumer read %+v, want entry %s", got, added.Val())
	}
	env.waitTrajectories(t, []liveTask{redelivered}, 30*time.Second)

	// A dead letter: an entry no runtime can parse is dead-lettered at once.
	if err := env.rdb.XAdd(ctx, &redis.XAddArgs{
		Stream: core.StreamCode, Values: map[string]any{queue.FieldTask: `{"task_id":"live-poison","task_type":"bogus","description":"x"}`},
	}).Err(); err != nil {
		t.Fatal(err)
	}

	// Wait until Prometheus has scraped the final state, then a few more
	// scrapes so that every rate() window holds several samples.
	completed := len(env.tasks) + 1
	prom.waitValue(t, "sum(tasks_completed_total)", float64(completed), 30*time.Second)
	prom.waitValue(t, "sum(tasks_redelivered_total)", 1, 30*time.Second)
	prom.waitValue(t, "sum(tasks_dead_lettered_total)", 1, 30*time.Second)
	prom.waitValue(t, "max(dead_letter_size)", 1, 30*time.Second)
	time.Sleep(3 * liveScrapeInterval)
	now := time.Now()

	t.Run("dashboard", func(t *testing.T) {
		d, err := LoadDashboard(filepath.Join(repoRoot(t), "configs", "grafana", "dashboards", "agent-pipeline.json"))
		if err != nil {
			t.Fatal(err)
		}
		exprs := d.Exprs()
		if len(exprs) == 0 {
			t.Fatal("the dashboard has no queries")
		}
		for _, e := range exprs {
			var res promData
			var err error
			if e.Instant {
				res, err = prom.query(e.Expr, now)
			} else {
				res, err = prom.queryRange(e.Expr, promStart, now, liveScrapeInterval)
			}
			if err != nil {
				t.Errorf("panel %q query %s (instant=%v): %v\n  %s", e.Panel, e.RefID, e.Instant, err, e.Expr)
				continue
			}
			if len(res.Result) == 0 {
				t.Errorf("panel %q query %s (instant=%v) returned no data:\n  %s", e.Panel, e.RefID, e.Instant, e.Expr)
				continue
			}
			// A per-instance series must come from a binary that exports
			// the metric: every binary registers the whole metrics.Set, so
			// a query that does not select the job shows, say, the
			// dispatcher as a browser with no pages.
			for _, raw := range res.Result {
				var series struct {
					Metric map[string]string `json:"metric"`
				}
				if err := json.Unmarshal(raw, &series); err != nil {
					t.Fatal(err)
				}
				inst, ok := series.Metric["instance"]
				if !ok {
					continue
				}
				for _, name := range SeriesNames(e.Expr) {
					if m, ok := MetricOf(name); ok && !slices.Contains(exportersOf(m), env.binaryAt[inst]) {
						t.Errorf("panel %q query %s shows instance %s (%s), not an exporter of %s (deploytest.Metrics: %s): select the job\n  %s",
							e.Panel, e.RefID, inst, env.binaryAt[inst], name, m.Exporter, e.Expr)
					}
				}
			}
			t.Logf("panel %q %s: %d series", e.Panel, e.RefID, len(res.Result))
		}
	})

	t.Run("alerts", func(t *testing.T) {
		rules, err := LoadAlertRules(filepath.Join(repoRoot(t), "configs", "prometheus", "alerts.yml"))
		if err != nil {
			t.Fatal(err)
		}
		if len(rules) == 0 {
			t.Fatal("no alert rules")
		}
		// Each expression parses and evaluates (an empty result is fine:
		// nothing is wrong).
		for _, r := range rules {
			if _, err := prom.query(r.Expr, now); err != nil {
				t.Errorf("alert %s: %v\n  %s", r.Alert, err, r.Expr)
			}
		}
		// Prometheus loaded the same rules and evaluates them without error.
		loaded := prom.rules(t)
		for _, r := range rules {
			got, ok := loaded[r.Alert]
			switch {
			case !ok:
				t.Errorf("alert %s not loaded by Prometheus", r.Alert)
			case got.Health != "ok" || got.LastError != "":
				t.Errorf("alert %s: health %q, last error %q", r.Alert, got.Health, got.LastError)
			}
		}
	})

	t.Run("exported metrics match deploytest.Metrics", func(t *testing.T) {
		exported := map[string]map[string]*dto.MetricFamily{} // binary -> family name -> family
		for _, s := range []*testsupport.Service{env.dispatcher, env.sandbox, env.web} {
			exported[s.Name] = parseMetrics(t, s.Name, s.Metrics())
		}
		checkExportedMetrics(t, exported)
	})

	t.Run("trajectories", func(t *testing.T) {
		// The batch is as mixed as intended: the dashboard's series carry
		// both outcomes, several error types and a cache hit.
		for _, task := range append(env.tasks, redelivered) {
			tr := env.trajectory(t, task.id)
			if got := tr.ErrorType; got != task.errorType || tr.Success != (task.errorType == "") {
				t.Errorf("%s: success=%v error_type=%q, want error_type %q (%s)", task.id, tr.Success, got, task.errorType, tr.ErrorMessage)
			}
		}
		if hit, _ := env.trajectory(t, "live-fib-cached").Metadata["cache_hit"].(bool); !hit {
			t.Errorf("live-fib-cached: no template cache hit")
		}
		if d, _ := env.trajectory(t, redelivered.id).Metadata["deliveries"].(float64); d < 2 {
			t.Errorf("%s: deliveries = %v, want >= 2", redelivered.id, d)
		}
	})
}

// liveStack is Redis, the demo site, a fake LLM and the three binaries,
// processing the tasks of one file.
type liveStack struct {
	rdb                      *redis.Client
	outputDir                string
	tasks                    []liveTask
	dispatcher, sandbox, web *testsupport.Service
	binaryAt                 map[string]string // metrics address -> binary name
}

func startLiveStack(t *testing.T) *liveStack {
	t.Helper()
	browser := testsupport.FindBrowser(t)
	r := testsupport.StartRedis(t)
	bin := testsupport.BuildBinaries(t)

	site := httptest.NewServer(demosite.Handler())
	t.Cleanup(site.Close)
	siteHost := strings.TrimPrefix(site.URL, "http://")

	// A scripted model for the sandbox runtime: without an LLM no runtime
	// exports llm_requests_total or llm_tokens_total.
	fake := testsupport.StartFakeLLM(t, liveLLMReply)

	s := &liveStack{rdb: r.Client, outputDir: t.TempDir()}
	s.tasks = []liveTask{
		{line: `{"task_id":"live-fib","task_type":"code","description":"Calculate fibonacci(10)","constraints":{"expected_output":"55"}}`, id: "live-fib"},
		// Same description: replayed from the template cache.
		{line: `{"task_id":"live-fib-cached","task_type":"code","description":"Calculate fibonacci(10)","constraints":{"expected_output":"55"}}`, id: "live-fib-cached"},
		{line: `{"task_id":"live-reasoning","task_type":"reasoning","description":"What is 6 times 7?","constraints":{"expected_output":"42"}}`, id: "live-reasoning"},
		{line: `{"task_id":"live-replay","task_type":"code","description":"sum of 0..4","constraints":{"code":"print(sum(range(5)))","expected_output":"10"}}`, id: "live-replay"},
		{line: `{"task_id":"live-syntax","task_type":"code","description":"a syntax error","constraints":{"code":"def f(:"}}`, id: "live-syntax", errorType: core.ErrCompile},
		{line: `{"task_id":"live-wrong","task_type":"code","description":"a wrong answer","constraints":{"code":"print(1)","expected_output":"2"}}`, id: "live-wrong", errorType: core.ErrWrongAnswer},
		{line: fmt.Sprintf(`{"task_id":"live-web","task_type":"web","description":"Search for information about topic 3","constraints":{"start_url":"%s/","expected_text":"ADP-21"}}`, site.URL), id: "live-web"},
		{line: `{"task_id":"live-web-blocked","task_type":"web","description":"Read the password file","constraints":{"start_url":"file:///etc/passwd"}}`, id: "live-web-blocked", errorType: core.ErrBlockedURL},
	}
	var lines []string
	for _, task := range s.tasks {
		lines = append(lines, task.line)
	}
	lines = append(lines,
		s.tasks[0].line, // a duplicate task_id: tasks_duplicate_total
		`{"task_id":"live-invalid","task_type":"nope","description":"x"}`, // tasks_rejected_total
	)
	taskFile := filepath.Join(t.TempDir(), "tasks.jsonl")
	if err := os.WriteFile(taskFile, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	common := []string{"REDIS_URL=" + r.URL, "OUTPUT_DIR=" + s.outputDir, "LOG_LEVEL=debug"}
	runtime := append(slices.Clone(common), "LEASE_TTL=2s", "HEALTH_INTERVAL=1s", "SHUTDOWN_GRACE=5s")
	// The web runtime must not use the LLM: its tasks run on the search rules.
	s.web = testsupport.StartService(t, filepath.Join(bin, "web-runtime"), append(slices.Clone(runtime),
		"CHROMIUM_PATH="+browser.Chromium, "PLAYWRIGHT_DRIVER_PATH="+browser.DriverDir, "PLAYWRIGHT_NODEJS_PATH="+browser.Node,
		"WEB_ALLOW_HOSTS="+siteHost, "MAX_CONCURRENT=2", "LLM_BASE_URL=", "VLLM_URL=",
	), true)
	// One slot, so the second Fibonacci task runs after the first has filled
	// the template cache.
	s.sandbox = testsupport.StartService(t, filepath.Join(bin, "sandbox-runtime"), append(slices.Clone(runtime),
		"SANDBOX_CONCURRENCY=1", "SANDBOX_INFLIGHT=1", "LLM_BASE_URL="+fake.URL, "LLM_MODEL=fake", "LLM_MAX_RETRIES=1",
	), true)
	s.dispatcher = testsupport.StartService(t, filepath.Join(bin, "dispatcher"), append(slices.Clone(common),
		"TASK_FILE="+taskFile, "MONITOR_INTERVAL=1s", "DISPATCH_POLL_INTERVAL=100ms",
	), true)
	s.binaryAt = map[string]string{}
	for _, svc := range []*testsupport.Service{s.dispatcher, s.sandbox, s.web} {
		s.binaryAt[svc.MetricsAddr] = svc.Name
	}
	return s
}

// liveLLMReply is a model that knows the answers of the live batch: it runs
// a program for the Fibonacci task and then answers with its output, and
// answers the reasoning task without code.
func liveLLMReply(req testsupport.FakeLLMRequest, n int) (int, any) {
	var task, toolResult string
	for _, m := range req.Messages {
		switch m.Role {
		case "user":
			if task == "" {
				task = m.Content
			}
		case "tool":
			toolResult = m.Content
		}
	}
	switch {
	case strings.Contains(task, "What is 6 times 7?"):
		return http.StatusOK, testsupport.AnswerReply("42")
	case strings.Contains(task, "fibonacci(10)") && toolResult == "":
		code := "a, b = 0, 1\nfor _ in range(10):\n    a, b = b, a + b\nprint(a)\n"
		return http.StatusOK, testsupport.ToolCallReply(fmt.Sprintf("call-%d", n), "run_python", map[string]string{"code": code})
	case strings.Contains(task, "fibonacci(10)"):
		return http.StatusOK, testsupport.AnswerReply("55")
	}
	return http.StatusBadRequest, testsupport.ErrorReply("the live test's model knows no answer to: " + task)
}

// waitTrajectories waits until every task has its trajectory file.
func (s *liveStack) waitTrajectories(t *testing.T, tasks []liveTask, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		var missing []string
		for _, task := range tasks {
			if _, err := os.Stat(s.trajectoryPath(task.id)); err != nil {
				missing = append(missing, task.id)
			}
		}
		if len(missing) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no trajectory after %s for %v\ndispatcher:\n%s\nsandbox-runtime:\n%s\nweb-runtime:\n%s",
				timeout, missing, tail(s.dispatcher.Log()), tail(s.sandbox.Log()), tail(s.web.Log()))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (s *liveStack) trajectoryPath(id string) string {
	return filepath.Join(s.outputDir, "trajectories", id+".json")
}

func (s *liveStack) trajectory(t *testing.T, id string) core.Trajectory {
	t.Helper()
	data, err := os.ReadFile(s.trajectoryPath(id))
	if err != nil {
		t.Fatal(err)
	}
	var tr core.Trajectory
	if err := json.Unmarshal(data, &tr); err != nil {
		t.Fatalf("%s: %v", id, err)
	}
	return tr
}

// tail returns the end of a log, enough to see why a service misbehaved.
func tail(log string) string {
	const maxBytes = 4000
	if len(log) > maxBytes {
		return "…" + log[len(log)-maxBytes:]
	}
	return log
}

// livePrometheus is a prometheus process and a client of its HTTP API.
type livePrometheus struct {
	url     string
	logPath string
	client  *http.Client
}

// startPrometheus runs prometheus with the local configuration rendered for
// lp on a free loopback port and waits until it is ready.
func startPrometheus(t *testing.T, bin string, lp LocalPrometheus) *livePrometheus {
	t.Helper()
	cfg, err := RenderLocalPrometheusConfig(lp)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgFile, cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(testsupport.FreePort(t)))
	p := &livePrometheus{url: "http://" + addr, logPath: filepath.Join(dir, "prometheus.log"), client: &http.Client{Timeout: 10 * time.Second}}
	logf, err := os.Create(p.logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin,
		"--config.file="+cfgFile,
		"--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr,
		"--log.level=warn",
	)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start prometheus: %v", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); _ = logf.Close(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
	})

	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := p.client.Get(p.url + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p
			}
		}
		select {
		case <-exited:
			t.Fatalf("prometheus exited while starting:\n%s\nconfig:\n%s", p.log(), cfg)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("prometheus not ready after 30s:\n%s", p.log())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (p *livePrometheus) log() string {
	b, _ := os.ReadFile(p.logPath)
	return tail(string(b))
}

// promResponse is the envelope of every answer of Prometheus's HTTP API.
type promResponse struct {
	Status    string          `json:"status"`
	ErrorType string          `json:"errorType"`
	Error     string          `json:"error"`
	Data      json.RawMessage `json:"data"`
}

// promData is the data of a query answer.
type promData struct {
	ResultType string            `json:"resultType"`
	Result     []json.RawMessage `json:"result"`
}

// api calls (GET) an endpoint of the HTTP API and decodes its data into v; an
// answer whose status is not "success" is an error.
func (p *livePrometheus) api(path string, form url.Values, v any) error {
	resp, err := p.client.Get(p.url + path + "?" + form.Encode())
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	var r promResponse
	if err := json.Unmarshal(body, &r); err != nil {
		return fmt.Errorf("%s: HTTP %d: %s", path, resp.StatusCode, body)
	}
	if r.Status != "success" {
		return fmt.Errorf("%s: status %q: %s: %s", path, r.Status, r.ErrorType, r.Error)
	}
	return json.Unmarshal(r.Data, v)
}

func promTime(t time.Time) string {
	return strconv.FormatFloat(float64(t.UnixMilli())/1000, 'f', 3, 64)
}

// query runs an instant query at ts.
func (p *livePrometheus) query(expr string, ts time.Time) (promData, error) {
	var d promData
	err := p.api("/api/v1/query", url.Values{"query": {expr}, "time": {promTime(ts)}}, &d)
	return d, err
}

// queryRange runs a range query, as a Grafana time series panel does.
func (p *livePrometheus) queryRange(expr string, start, end time.Time, step time.Duration) (promData, error) {
	var d promData
	err := p.api("/api/v1/query_range", url.Values{
		"query": {expr}, "start": {promTime(start)}, "end": {promTime(end)},
		"step": {strconv.FormatFloat(step.Seconds(), 'f', -1, 64)},
	}, &d)
	return d, err
}

// scalar returns the value of an instant query that yields one sample.
func (p *livePrometheus) scalar(expr string) (float64, bool) {
	d, err := p.query(expr, time.Now())
	if err != nil || len(d.Result) != 1 {
		return 0, false
	}
	var s struct {
		Value [2]any `json:"value"`
	}
	if json.Unmarshal(d.Result[0], &s) != nil {
		return 0, false
	}
	str, _ := s.Value[1].(string)
	v, err := strconv.ParseFloat(str, 64)
	return v, err == nil
}

// waitValue waits until expr evaluates to at least want.
func (p *livePrometheus) waitValue(t *testing.T, expr string, want float64, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		v, ok := p.scalar(expr)
		if ok && v >= want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s = %v (ok=%v) after %s, want >= %v\n%s", expr, v, ok, timeout, want, p.log())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// waitTargetsUp waits until Prometheus has scraped n targets successfully.
func (p *livePrometheus) waitTargetsUp(t *testing.T, n int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		var d struct {
			ActiveTargets []struct {
				Labels    map[string]string `json:"labels"`
				Health    string            `json:"health"`
				LastError string            `json:"lastError"`
			} `json:"activeTargets"`
		}
		err := p.api("/api/v1/targets", url.Values{"state": {"active"}}, &d)
		up := 0
		var states []string
		for _, tg := range d.ActiveTargets {
			if tg.Health == "up" {
				up++
			}
			states = append(states, fmt.Sprintf("%s %s: %s %s", tg.Labels["job"], tg.Labels["instance"], tg.Health, tg.LastError))
		}
		if err == nil && up == n && len(d.ActiveTargets) == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("targets not all up after %s (err %v): %v\n%s", timeout, err, states, p.log())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// promRule is the state of one loaded rule.
type promRule struct {
	Name      string `json:"name"`
	Health    string `json:"health"`
	LastError string `json:"lastError"`
}

// rules returns the alerting rules Prometheus loaded, by name, once each has
// been evaluated at least once.
func (p *livePrometheus) rules(t *testing.T) map[string]promRule {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		var d struct {
			Groups []struct {
				Rules []promRule `json:"rules"`
			} `json:"groups"`
		}
		if err := p.api("/api/v1/rules", url.Values{"type": {"alert"}}, &d); err != nil {
			t.Fatal(err)
		}
		out := map[string]promRule{}
		evaluated := true
		for _, g := range d.Groups {
			for _, rule := range g.Rules {
				out[rule.Name] = rule
				if rule.Health == "unknown" {
					evaluated = false
				}
			}
		}
		if evaluated || time.Now().After(deadline) {
			return out
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// parseMetrics parses a /metrics page in the text format.
func parseMetrics(t *testing.T, name, text string) map[string]*dto.MetricFamily {
	t.Helper()
	if text == "" {
		t.Fatalf("%s: empty /metrics", name)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		t.Fatalf("%s: parse /metrics: %v", name, err)
	}
	return fams
}

// platformMetric reports whether a family is the platform's own rather than
// one of client_golang's standard collectors.
func platformMetric(name string) bool {
	for _, prefix := range []string{"go_", "process_", "promhttp_"} {
		if strings.HasPrefix(name, prefix) {
			return false
		}
	}
	return true
}

// exportersOf expands a Metric's Exporter into binary names.
func exportersOf(m Metric) []string {
	if m.Exporter == "runtimes" {
		return []string{JobSandboxRuntime, JobWebRuntime}
	}
	return []string{m.Exporter}
}

// checkExportedMetrics compares what each binary exports (binary name ->
// families) with Metrics: every platform metric a binary exports is listed
// with the same type and labels, and every listed metric is exported by a
// binary its Exporter names.
func checkExportedMetrics(t *testing.T, exported map[string]map[string]*dto.MetricFamily) {
	t.Helper()
	types := map[dto.MetricType]MetricType{
		dto.MetricType_COUNTER: Counter, dto.MetricType_GAUGE: Gauge, dto.MetricType_HISTOGRAM: Histogram,
	}
	listed := map[string]Metric{}
	for _, m := range Metrics {
		listed[m.Name] = m
	}
	for _, bin := range slices.Sorted(maps.Keys(exported)) {
		for name, fam := range exported[bin] {
			if !platformMetric(name) {
				continue
			}
			m, ok := listed[name]
			if !ok {
				t.Errorf("%s exports %s, which is not in deploytest.Metrics: add it there (and to docs/metrics.md) or stop exporting it", bin, name)
				continue
			}
			if got := types[fam.GetType()]; got != m.Type {
				t.Errorf("%s exports %s as %s, deploytest.Metrics says %s", bin, name, fam.GetType(), m.Type)
			}
			labels := map[string]bool{}
			for _, s := range fam.GetMetric() {
				for _, l := range s.GetLabel() {
					labels[l.GetName()] = true
				}
			}
			got := slices.Sorted(maps.Keys(labels))
			want := slices.Sorted(slices.Values(m.Labels))
			if !slices.Equal(got, want) {
				t.Errorf("%s exports %s with labels %v, deploytest.Metrics says %v", bin, name, got, want)
			}
		}
	}
	for _, m := range Metrics {
		var by []string
		for _, bin := range exportersOf(m) {
			if _, ok := exported[bin][m.Name]; ok {
				by = append(by, bin)
			}
		}
		if len(by) == 0 {
			var elsewhere []string
			for bin, fams := range exported {
				if _, ok := fams[m.Name]; ok {
					elsewhere = append(elsewhere, bin)
				}
			}
			t.Errorf("deploytest.Metrics lists %s from %s, but no such binary exports it (exported by: %v)", m.Name, m.Exporter, elsewhere)
		}
	}
}
