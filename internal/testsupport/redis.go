// Package testsupport starts the real servers tests need (redis-server, HTTP
// servers on loopback) and stops them with t.Cleanup. It is imported only by
// tests.
package testsupport

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Redis is a private redis-server on a free loopback port.
type Redis struct {
	Addr   string // host:port
	URL    string // redis://host:port
	Dir    string // data directory (AOF lives here)
	Port   int
	Client *redis.Client

	t      testing.TB
	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd has exited
	args   []string
}

// RedisOption adjusts the server's command line.
type RedisOption func(*[]string)

// WithRedisArgs appends raw redis-server arguments ("--requirepass", "x").
func WithRedisArgs(args ...string) RedisOption {
	return func(a *[]string) { *a = append(*a, args...) }
}

// StartRedis starts redis-server on a free loopback port with AOF on
// (appendfsync everysec, as in production) and registers its shutdown. The
// test is skipped only if redis-server is not installed, with a message
// saying how to install it.
func StartRedis(t testing.TB, opts ...RedisOption) *Redis {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Skip("redis-server not installed: run scripts/bootstrap.sh --test (apt-get install redis-server)")
	}
	r := &Redis{t: t, Dir: t.TempDir(), Port: FreePort(t)}
	r.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(r.Port))
	r.URL = "redis://" + r.Addr
	r.args = []string{
		"--bind", "127.0.0.1", "--port", strconv.Itoa(r.Port),
		"--dir", r.Dir, "--appendonly", "yes", "--appendfsync", "everysec",
		"--save", "", "--daemonize", "no", "--protected-mode", "no",
		"--loglevel", "warning", "--maxmemory-policy", "noeviction",
	}
	for _, o := range opts {
		o(&r.args)
	}
	r.start(bin)
	r.Client = redis.NewClient(&redis.Options{Addr: r.Addr, Password: r.password()})
	t.Cleanup(func() {
		_ = r.Client.Close()
		r.Kill()
	})
	return r
}

func (r *Redis) password() string {
	for i, a := range r.args {
		if a == "--requirepass" && i+1 < len(r.args) {
			return r.args[i+1]
		}
	}
	return ""
}

func (r *Redis) start(bin string) {
	r.t.Helper()
	r.cmd = exec.Command(bin, r.args...)
	logf, err := os.Create(filepath.Join(r.Dir, "redis.log"))
	if err != nil {
		r.t.Fatalf("create redis log: %v", err)
	}
	r.cmd.Stdout, r.cmd.Stderr = logf, logf
	if err := r.cmd.Start(); err != nil {
		r.t.Fatalf("start redis-server: %v", err)
	}
	exited := make(chan struct{})
	r.exited = exited
	go func(cmd *exec.Cmd) { _ = cmd.Wait(); _ = logf.Close(); close(exited) }(r.cmd)
	WaitTCP(r.t, r.Addr, 10*time.Second)
	// Wait until it answers PING (it may still be loading the AOF).
	c := redis.NewClient(&redis.Options{Addr: r.Addr, Password: r.password()})
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := c.Ping(context.Background()).Err()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(r.Dir, "redis.log"))
			r.t.Fatalf("redis-server on %s not ready: %v\n%s", r.Addr, err, log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Kill stops the server with SIGKILL (as a crash would) and waits for it to exit.
func (r *Redis) Kill() {
	if r.cmd == nil || r.cmd.Process == nil {
		return
	}
	_ = r.cmd.Process.Kill()
	<-r.exited
	r.cmd = nil
}

// Restart starts the server again on the same port and data directory; with
// AOF it reloads what it had fsynced.
func (r *Redis) Restart() {
	r.t.Helper()
	r.Kill()
	bin, _ := exec.LookPath("redis-server")
	r.start(bin)
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("find a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// WaitTCP waits until addr accepts TCP connections.
func WaitTCP(t testing.TB, addr string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			_ = c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not accepting connections after %s: %v", addr, timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
