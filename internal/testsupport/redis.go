// Package testsupport starts the real servers tests need (redis-server, HTTP
// servers on loopback) and stops them with t.Cleanup. It is imported only by
// tests.
package testsupport

import (
	"context"
	"fmt"
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
	r := &Redis{t: t, Dir: t.TempDir()}
	// A port found free may be taken by another test process before
	// redis-server binds it: then try another.
	for attempt := 1; ; attempt++ {
		r.Port = FreePort(t)
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
		err := r.start(bin)
		if err == nil {
			break
		}
		r.Kill()
		if attempt == 5 {
			t.Fatalf("start redis-server: %v", err)
		}
	}
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

// start launches the server and waits until it answers; an error means the
// server did not come up on its port (the port was taken meanwhile).
func (r *Redis) start(bin string) error {
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
	// Wait until it answers PING (it may still be loading the AOF), and
	// make sure the server answering is this one, not another test's.
	c := redis.NewClient(&redis.Options{Addr: r.Addr, Password: r.password(), MaxRetries: -1})
	defer c.Close()
	deadline := time.Now().Add(15 * time.Second)
	for {
		select {
		case <-exited:
			log, _ := os.ReadFile(filepath.Join(r.Dir, "redis.log"))
			return fmt.Errorf("redis-server on %s exited: %s", r.Addr, log)
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		dir, err := c.ConfigGet(ctx, "dir").Result()
		cancel()
		if err == nil {
			want, _ := filepath.EvalSymlinks(r.Dir) // redis reports its resolved working directory
			if dir["dir"] != r.Dir && dir["dir"] != want {
				return fmt.Errorf("port %d is served by another redis-server (dir %s)", r.Port, dir["dir"])
			}
			return nil
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(r.Dir, "redis.log"))
			return fmt.Errorf("redis-server on %s not ready: %v\n%s", r.Addr, err, log)
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
	if err := r.start(bin); err != nil {
		r.t.Fatalf("restart redis-server: %v", err)
	}
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
