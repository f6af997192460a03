package deploytest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"go.yaml.in/yaml/v4"
)

// k8sObject is the part of a Kubernetes object the tests inspect; Raw keeps
// the whole document.
type k8sObject struct {
	APIVersion string `yaml:"apiVersion"`
	Kind       string `yaml:"kind"`
	Metadata   struct {
		Name        string            `yaml:"name"`
		Namespace   string            `yaml:"namespace"`
		Labels      map[string]string `yaml:"labels"`
		Annotations map[string]string `yaml:"annotations"`
	} `yaml:"metadata"`
	Raw map[string]any `yaml:"-"`
}

var (
	k8sOnce    sync.Once
	k8sObjects []k8sObject
	k8sErr     error
	k8sOutput  string
)

// renderK8s runs `kubectl kustomize deploy/k8s` once and parses its output.
func renderK8s(t *testing.T) []k8sObject {
	t.Helper()
	kubectl := lookTool(t, "kubectl", "needed to render deploy/k8s")
	k8sOnce.Do(func() {
		cmd := exec.Command(kubectl, "kustomize", "deploy/k8s")
		cmd.Dir = repoRoot(t)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			k8sErr = fmt.Errorf("%w: %s", err, stderr.String())
			return
		}
		k8sOutput = stdout.String()
		dec := yaml.NewDecoder(strings.NewReader(k8sOutput))
		for {
			var raw map[string]any
			err := dec.Decode(&raw)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				k8sErr = err
				return
			}
			if raw == nil {
				continue
			}
			data, _ := yaml.Marshal(raw)
			var o k8sObject
			if err := yaml.Unmarshal(data, &o); err != nil {
				k8sErr = err
				return
			}
			o.Raw = raw
			k8sObjects = append(k8sObjects, o)
		}
	})
	if k8sErr != nil {
		t.Fatalf("kubectl kustomize deploy/k8s: %v\n%s", k8sErr, k8sOutput)
	}
	return k8sObjects
}

func findObject(objs []k8sObject, kind, name string) *k8sObject {
	for i := range objs {
		if objs[i].Kind == kind && objs[i].Metadata.Name == name {
			return &objs[i]
		}
	}
	return nil
}

// path walks a decoded YAML document: map keys, and list indexes as ints.
func path(v any, keys ...any) any {
	for _, k := range keys {
		switch k := k.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				return nil
			}
			v = m[k]
		case int:
			l, ok := v.([]any)
			if !ok || k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}

func TestKustomizeRenders(t *testing.T) {
	t.Parallel()
	objs := renderK8s(t)
	for _, want := range []struct{ kind, name string }{
		{"Namespace", "adp"},
		{"Deployment", "dispatcher"},
		{"Deployment", "sandbox-runtime"},
		{"Deployment", "web-runtime"},
		{"StatefulSet", "redis"},
		{"Service", "redis"},
		{"PersistentVolumeClaim", "adp-output"},
		{"ConfigMap", "adp-env"},
		{"ScaledObject", "sandbox-runtime"},
		{"ScaledObject", "web-runtime"},
	} {
		if findObject(objs, want.kind, want.name) == nil {
			t.Errorf("rendered output has no %s %s", want.kind, want.name)
		}
	}
	for _, o := range objs {
		if o.Kind != "Namespace" && o.Metadata.Namespace != "adp" {
			t.Errorf("%s %s in namespace %q, want adp", o.Kind, o.Metadata.Name, o.Metadata.Namespace)
		}
	}
}

func TestKustomizeScaledObjects(t *testing.T) {
	t.Parallel()
	objs := renderK8s(t)
	for _, tt := range []struct{ name, stream string }{
		{"sandbox-runtime", "tasks:code"},
		{"web-runtime", "tasks:web"},
	} {
		so := findObject(objs, "ScaledObject", tt.name)
		if so == nil {
			t.Errorf("no ScaledObject %s", tt.name)
			continue
		}
		if so.APIVersion != "keda.sh/v1alpha1" {
			t.Errorf("%s: apiVersion %s", tt.name, so.APIVersion)
		}
		if target := path(so.Raw, "spec", "scaleTargetRef", "name"); target != tt.name {
			t.Errorf("%s: scaleTargetRef %v", tt.name, target)
		}
		if findObject(objs, "Deployment", tt.name) == nil {
			t.Errorf("%s: no Deployment to scale", tt.name)
		}
		if r := path(so.Raw, "spec", "minReplicaCount"); r == nil || r.(int) < 1 {
			t.Errorf("%s: minReplicaCount %v, want >= 1", tt.name, r)
		}
		triggers, _ := path(so.Raw, "spec", "triggers").([]any)
		var lag, pending bool
		for i := range triggers {
			if path(triggers, i, "type") != "redis-streams" {
				t.Errorf("%s: trigger %d type %v", tt.name, i, path(triggers, i, "type"))
				continue
			}
			md, _ := path(triggers, i, "metadata").(map[string]any)
			if md["stream"] != tt.stream || md["consumerGroup"] != "workers" {
				t.Errorf("%s: trigger %d stream %v group %v, want %s workers", tt.name, i, md["stream"], md["consumerGroup"], tt.stream)
			}
			if md["address"] == nil && md["addressFromEnv"] == nil && md["host"] == nil {
				t.Errorf("%s: trigger %d has no Redis address", tt.name, i)
			}
			_, hasLag := md["lagCount"]
			_, hasPending := md["pendingEntriesCount"]
			lag = lag || hasLag
			pending = pending || hasPending
		}
		if !lag || !pending {
			t.Errorf("%s: want a lagCount and a pendingEntriesCount trigger (lag %v, pending %v)", tt.name, lag, pending)
		}
		// Replicas belong to KEDA's HPA; a replicas field would fight it.
		if r := path(findObject(objs, "Deployment", tt.name).Raw, "spec", "replicas"); r != nil {
			t.Errorf("Deployment %s sets replicas %v: KEDA owns them", tt.name, r)
		}
	}
}

func container(o *k8sObject, name string) map[string]any {
	cs, _ := path(o.Raw, "spec", "template", "spec", "containers").([]any)
	for _, c := range cs {
		if m, ok := c.(map[string]any); ok && m["name"] == name {
			return m
		}
	}
	return nil
}

func TestKustomizeWorkloads(t *testing.T) {
	t.Parallel()
	objs := renderK8s(t)
	for _, svc := range adpServices {
		t.Run(svc.service, func(t *testing.T) {
			d := findObject(objs, "Deployment", svc.service)
			if d == nil {
				t.Fatal("no Deployment")
			}
			ann, _ := path(d.Raw, "spec", "template", "metadata", "annotations").(map[string]any)
			if ann["prometheus.io/scrape"] != "true" || ann["prometheus.io/port"] != strconv.Itoa(svc.port) {
				t.Errorf("scrape annotations = %v", ann)
			}
			c := container(d, svc.service)
			if c == nil {
				t.Fatal("no container named after the service")
			}
			if img, _ := c["image"].(string); !strings.HasPrefix(img, "adp/"+svc.binary+":") {
				t.Errorf("image %q", img)
			}
			if path(c, "livenessProbe", "httpGet", "path") == "/healthz" {
				t.Errorf("liveness on /healthz: a Redis outage would restart every pod")
			}
			if path(c, "readinessProbe", "httpGet", "path") != "/readyz" {
				t.Errorf("readiness probe %v, want /readyz", path(c, "readinessProbe"))
			}
			mounts, _ := c["volumeMounts"].([]any)
			if !slices.ContainsFunc(mounts, func(m any) bool { return path(m, "mountPath") == "/data/output" }) {
				t.Errorf("no /data/output mount")
			}
			sc := path(c, "securityContext")
			podSC := path(d.Raw, "spec", "template", "spec", "securityContext")
			switch svc.service {
			case "sandbox-runtime":
				caps, _ := path(sc, "capabilities", "add").([]any)
				if !slices.Equal(caps, []any{"SYS_ADMIN"}) {
					t.Errorf("capabilities.add = %v, want [SYS_ADMIN]", caps)
				}
				if path(sc, "seccompProfile", "type") != "Unconfined" || path(sc, "appArmorProfile", "type") != "Unconfined" {
					t.Errorf("securityContext = %v, want seccomp and AppArmor Unconfined", sc)
				}
				if path(sc, "privileged") == true {
					t.Errorf("privileged")
				}
			default:
				if path(podSC, "runAsNonRoot") != true || path(sc, "allowPrivilegeEscalation") != false {
					t.Errorf("pod securityContext %v / container %v: want non-root, no privilege escalation", podSC, sc)
				}
				if caps, _ := path(sc, "capabilities", "drop").([]any); !slices.Equal(caps, []any{"ALL"}) {
					t.Errorf("capabilities.drop = %v, want [ALL]", caps)
				}
			}
		})
	}
}

func TestKustomizeStorage(t *testing.T) {
	t.Parallel()
	objs := renderK8s(t)
	pvc := findObject(objs, "PersistentVolumeClaim", "adp-output")
	if pvc == nil {
		t.Fatal("no PVC adp-output")
	}
	if modes, _ := path(pvc.Raw, "spec", "accessModes").([]any); !slices.Equal(modes, []any{"ReadWriteMany"}) {
		t.Errorf("adp-output accessModes = %v, want [ReadWriteMany]", modes)
	}
	redis := findObject(objs, "StatefulSet", "redis")
	if redis == nil {
		t.Fatal("no redis StatefulSet")
	}
	c := container(redis, "redis")
	args, _ := c["args"].([]any)
	for _, want := range [][2]string{{"--appendonly", "yes"}, {"--appendfsync", "everysec"}, {"--maxmemory-policy", "noeviction"}} {
		i := slices.Index(args, any(want[0]))
		if i < 0 || i+1 >= len(args) || args[i+1] != want[1] {
			t.Errorf("redis args %v: want %s %s", args, want[0], want[1])
		}
	}
	if path(redis.Raw, "spec", "volumeClaimTemplates", 0, "metadata", "name") != "data" {
		t.Errorf("redis has no persistent volume claim template")
	}
	// tasks.jsonl reaches the dispatcher through the generated ConfigMap.
	d := findObject(objs, "Deployment", "dispatcher")
	vols, _ := path(d.Raw, "spec", "template", "spec", "volumes").([]any)
	var cm string
	for _, v := range vols {
		if name, ok := path(v, "configMap", "name").(string); ok {
			cm = name
		}
	}
	if cm == "" || findObject(objs, "ConfigMap", cm) == nil || !strings.HasPrefix(cm, "adp-tasks") {
		t.Errorf("dispatcher mounts ConfigMap %q, want the generated adp-tasks", cm)
	} else if data, _ := path(findObject(objs, "ConfigMap", cm).Raw, "data", "tasks.jsonl").(string); data == "" {
		t.Errorf("ConfigMap %s has no tasks.jsonl", cm)
	}
}
