// Package deploytest checks the deployment and observability files of the
// repository against the invariants the platform relies on:
// docker-compose.yml and docker-compose.minimal.yml (loaded with compose-go),
// the three Dockerfiles, configs/prometheus.yml and its alert rules (promtool),
// the Grafana provisioning and dashboard, and the Kubernetes base in
// deploy/k8s (kubectl kustomize).
//
// Its non-test API serves later end-to-end tests that run the binaries as
// local processes under a real Prometheus: the metric names the dashboard and
// rules may use (Metrics), the expressions of the dashboard and the alert
// rules (LoadDashboard, LoadAlertRules), and a Prometheus configuration for
// local targets (RenderLocalPrometheusConfig).
package deploytest
