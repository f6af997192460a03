// Package redisconn opens the Redis client every binary uses, from REDIS_URL.
package redisconn

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"time"

	"github.com/redis/go-redis/v9"
)

// Options configures Open beyond the URL.
type Options struct {
	// CAFile is a PEM bundle to verify a rediss:// server with (REDIS_CA_FILE);
	// empty means the system roots.
	CAFile string
	// PoolSize bounds connections; 0 means go-redis' default (10 per CPU).
	PoolSize int
}

// Open parses a redis:// or rediss:// URL (user, password and database
// included: redis://:secret@host:6379/0) and returns a client. It does not
// contact the server. Errors never include the password.
func Open(rawURL string, o Options) (*redis.Client, error) {
	opt, err := redis.ParseURL(rawURL)
	if err != nil {
		return nil, fmt.Errorf("parse REDIS_URL %q: %w", Redact(rawURL), err)
	}
	if opt.TLSConfig != nil && o.CAFile != "" {
		pem, err := os.ReadFile(o.CAFile)
		if err != nil {
			return nil, fmt.Errorf("read REDIS_CA_FILE: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("REDIS_CA_FILE %s: no PEM certificates", o.CAFile)
		}
		opt.TLSConfig.RootCAs = pool
		opt.TLSConfig.MinVersion = tls.VersionTLS12
	}
	if o.PoolSize > 0 {
		opt.PoolSize = o.PoolSize
	}
	// Fail fast on a dead server instead of hanging a health check; blocking
	// reads (XREADGROUP BLOCK) extend their own deadline.
	opt.DialTimeout = 3 * time.Second
	opt.ReadTimeout = 5 * time.Second
	opt.WriteTimeout = 5 * time.Second
	return redis.NewClient(opt), nil
}

// Redact returns rawURL with any password replaced, for logs and errors.
func Redact(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "<unparseable URL>"
	}
	return u.Redacted()
}

// slogPrintf adapts go-redis' internal logger (connection pool notices) to
// the process's JSON log instead of plain lines on stderr.
type slogPrintf struct{ log *slog.Logger }

func (l slogPrintf) Printf(ctx context.Context, format string, v ...any) {
	l.log.WarnContext(ctx, "redis client: "+fmt.Sprintf(format, v...))
}

// UseSlog routes go-redis' own log lines to log. Call once at start-up.
func UseSlog(log *slog.Logger) { redis.SetLogger(slogPrintf{log}) }
