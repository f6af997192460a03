package chaos

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/agentdataplatform/adp/internal/testsupport"
)

// TestRedisAuthAndTLS runs the dispatcher and a sandbox runtime end to end
// against a redis-server that requires a password, first over plain TCP,
// then over TLS only (no plaintext port) with the server's certificate
// verified against REDIS_CA_FILE. Credentials must never appear in a
// service's log, in /metrics, /healthz or /readyz, nor in adpctl's output;
// the endpoints must not expose task content (ids, descriptions, program
// output). A runtime given the wrong password, or a CA that did not sign the
// server's certificate, must fail to connect (unhealthy, the reason logged)
// and still not log the secret.
func TestRedisAuthAndTLS(t *testing.T) {
	skipShort(t)
	t.Run("requirepass", func(t *testing.T) {
		pass := "pw-" + randomToken(12)
		r := setup(t, withRedisArgs("--requirepass", pass))
		u := "redis://:" + pass + "@" + r.redis.Addr
		r.redisURL = u
		// The server really refuses a client without the password.
		plain := redis.NewClient(&redis.Options{Addr: r.redis.Addr})
		defer plain.Close()
		if err := plain.Ping(t.Context()).Err(); err == nil || !strings.Contains(err.Error(), "NOAUTH") {
			t.Fatalf("PING without a password: %v; want NOAUTH", err)
		}
		secureEndToEnd(t, r, pass, nil)
	})
	t.Run("tls", func(t *testing.T) {
		pass := "pw-" + randomToken(12)
		srv := startTLSRedis(t, pass)
		r := setup(t, withRedis("rediss://:"+pass+"@"+srv.addr, srv.client, "REDIS_CA_FILE="+srv.caFile))
		// The server speaks only TLS: a plaintext client gets nowhere.
		plain := redis.NewClient(&redis.Options{Addr: srv.addr, Password: pass, DialTimeout: time.Second, ReadTimeout: time.Second, MaxRetries: -1})
		defer plain.Close()
		if err := plain.Ping(t.Context()).Err(); err == nil {
			t.Fatalf("a plaintext client reached the TLS-only server")
		}
		otherCA, _, _ := newCA(t, filepath.Join(t.TempDir(), "other"))
		secureEndToEnd(t, r, pass, []string{"REDIS_CA_FILE=" + otherCA})
	})
}

// secureEndToEnd runs 20 tasks through the rig's dispatcher and runtime and
// checks where the secret and the task content may and may not appear.
// wrongCA, when set, is the environment of a runtime with a CA that must
// not verify the server.
func secureEndToEnd(t *testing.T, r *rig, pass string, wrongCA []string) {
	t.Helper()
	const n = 20
	content := "DISTINCT-" + randomToken(8) // in every description and every output
	var ids, lines []string
	for i := range n {
		id := fmt.Sprintf("sec-%s-%02d", randomToken(4), i)
		ids = append(ids, id)
		b, _ := json.Marshal(map[string]any{
			"task_id": id, "task_type": "code", "description": fmt.Sprintf("%s task %d", content, i),
			"constraints": map[string]any{"code": fmt.Sprintf("print(%q, %q)", content, id)},
		})
		lines = append(lines, string(b))
	}
	r.writeTasks(lines)
	rt := r.startSandbox()
	d := r.startDispatcher()
	r.waitSettled(ids, 2*time.Minute)

	// Connections that must fail, without leaking the secret either.
	bad := []*testsupport.Service{
		r.start("sandbox-runtime", false, "REDIS_URL="+strings.Replace(r.redisURL, pass, "wrong-"+pass, 1)),
	}
	if wrongCA != nil {
		bad = append(bad, r.start("sandbox-runtime", false, wrongCA...))
	}
	for _, s := range bad {
		waitFor(t, time.Minute, 100*time.Millisecond, "the misconfigured runtime to log its connection error", func() (bool, string) {
			l := s.Log()
			return strings.Contains(l, "WRONGPASS") || strings.Contains(l, "certificate"), tail(l, 5)
		})
		if code := s.Healthz(); code == 200 {
			t.Errorf("a runtime with the wrong credentials or CA reports healthy")
		}
	}

	// Every endpoint of every service, and adpctl's status.
	out, stderr, code := r.adpctl("status")
	if code != 0 {
		t.Errorf("adpctl status: exit %d: %s", code, stderr)
	}
	texts := map[string]string{"adpctl status": out + stderr}
	for _, s := range append([]*testsupport.Service{rt, d}, bad...) {
		for path, body := range endpointBodies(s) {
			// By address too: the misconfigured runtimes share rt's name.
			texts[s.Name+" "+s.MetricsAddr+" "+path] = body
			for _, c := range append([]string{content}, ids...) {
				if strings.Contains(body, c) {
					t.Errorf("%s %s exposes task content %q", s.Name, path, c)
				}
			}
		}
	}
	if !strings.Contains(texts[rt.Name+" "+rt.MetricsAddr+" /metrics"], "tasks_completed_total") {
		t.Fatalf("the runtime's /metrics was not read")
	}
	res := r.checkOutcome(ids) // stops every service, so the logs are complete
	for _, s := range r.services {
		texts[s.Name+" log ("+s.MetricsAddr+")"] = s.Log()
	}
	// The services do log where Redis is, with the password redacted.
	if !strings.Contains(rt.Log(), ":xxxxx@") {
		t.Errorf("the runtime's log does not show the redacted REDIS_URL:\n%s", tail(rt.Log(), 5))
	}
	for where, text := range texts {
		if strings.Contains(text, pass) {
			t.Errorf("the Redis password appears in %s", where)
		}
	}
	if res.Files != n || res.Dead != 0 {
		t.Errorf("files %d, dead %d; want %d and 0", res.Files, res.Dead, n)
	}
	for _, id := range ids {
		checkPrintsID(t, res, id)
	}
}

// tlsRedis is a redis-server listening only on a TLS port.
type tlsRedis struct {
	addr, caFile string
	client       *redis.Client
}

// startTLSRedis starts redis-server with TLS only (--port 0), a certificate
// for 127.0.0.1 signed by a fresh CA, no client certificates, and a password.
func startTLSRedis(t *testing.T, pass string) *tlsRedis {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Skip("redis-server not installed: run scripts/bootstrap.sh --test (apt-get install redis-server)")
	}
	dir := t.TempDir()
	caFile, caCert, caKey := newCA(t, filepath.Join(dir, "ca"))
	certFile, keyFile := newServerCert(t, dir, caCert, caKey)
	port := testsupport.FreePort(t)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	cmd := exec.Command(bin,
		"--bind", "127.0.0.1", "--port", "0", "--tls-port", strconv.Itoa(port),
		"--tls-cert-file", certFile, "--tls-key-file", keyFile, "--tls-ca-cert-file", caFile,
		"--tls-auth-clients", "no", "--requirepass", pass,
		"--dir", dir, "--appendonly", "yes", "--appendfsync", "everysec", "--save", "",
		"--daemonize", "no", "--protected-mode", "no", "--loglevel", "warning",
		"--maxmemory-policy", "noeviction")
	logf, err := os.Create(filepath.Join(dir, "redis.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatalf("start redis-server with TLS: %v", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); logf.Close(); close(exited) }()

	pool := x509.NewCertPool()
	pem, _ := os.ReadFile(caFile)
	pool.AppendCertsFromPEM(pem)
	client := redis.NewClient(&redis.Options{
		Addr: addr, Password: pass,
		TLSConfig: &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12},
	})
	t.Cleanup(func() {
		_ = client.Close()
		_ = cmd.Process.Kill()
		<-exited
	})
	deadline := time.Now().Add(15 * time.Second)
	for client.Ping(context.Background()).Err() != nil {
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(dir, "redis.log"))
			t.Fatalf("redis-server with TLS on %s not ready:\n%s", addr, log)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return &tlsRedis{addr: addr, caFile: caFile, client: client}
}

// newCA writes a self-signed CA certificate to prefix.pem and returns its
// path, the certificate and its key.
func newCA(t *testing.T, prefix string) (string, *x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "adp chaos test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	path := prefix + ".pem"
	writePEM(t, path, "CERTIFICATE", der)
	return path, cert, key
}

// newServerCert writes a certificate for 127.0.0.1 and localhost signed by
// the CA, and its key, to dir; it returns their paths.
func newServerCert(t *testing.T, dir string, ca *x509.Certificate, caKey *ecdsa.PrivateKey) (string, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		DNSNames:     []string{"localhost"},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := filepath.Join(dir, "server.pem"), filepath.Join(dir, "server-key.pem")
	writePEM(t, certFile, "CERTIFICATE", der)
	writePEM(t, keyFile, "PRIVATE KEY", keyDER)
	return certFile, keyFile
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}
