package browser

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"
	"unicode"

	"github.com/playwright-community/playwright-go"
)

// DownloadName names the file a session keeps its n-th download (from 1)
// in, given the name the site suggested; the caller owns the layout of its
// output directory.
type DownloadName func(n int, suggested string) string

// KeepDownloads makes the session keep its downloads in dir, each in the
// file name names, up to MaxDownloadBytes each. Without it (or with
// MaxDownloadBytes negative) downloads are refused. Either way each is an
// event of the next observation.
func (s *Session) KeepDownloads(dir string, name DownloadName) {
	s.mu.Lock()
	s.dlDir, s.dlName = dir, name
	s.mu.Unlock()
}

// onDownload handles a download the page started. Chromium's own download
// is cancelled; when downloads are kept, the session fetches the URL again
// itself, through its egress proxy (so the URL policy holds) with the
// context's cookies, and stops reading at the bound: a download never
// fills the disk before it is checked. It runs on the driver's dispatch
// goroutine: the work is done on a goroutine the session owns.
func (s *Session) onDownload(d playwright.Download) {
	s.mu.Lock()
	dir, name, closed := s.dlDir, s.dlName, s.closed
	max := s.pool.cfg.MaxDownloadBytes
	keep := dir != "" && name != nil && max > 0 && !closed
	if keep {
		s.dlN++
		s.dlPending++
	}
	n := s.dlN
	s.mu.Unlock()
	what := fmt.Sprintf("a download of %q (%s)", d.SuggestedFilename(), redactURL(d.URL()))
	if !keep {
		s.pool.stats.downloads.Add(1)
		s.event(what + " was refused: downloads are not kept")
		go func() { _ = d.Cancel() }()
		return
	}
	go func() {
		defer func() {
			s.mu.Lock()
			s.dlPending--
			s.mu.Unlock()
		}()
		_ = d.Cancel()
		file := name(n, safeFileName(d.SuggestedFilename()))
		size, err := s.fetchDownload(d.URL(), filepath.Join(dir, file), max)
		var tooBig *downloadTooBigError
		switch {
		case errors.As(err, &tooBig):
			s.pool.stats.downloads.Add(1)
			s.event(fmt.Sprintf("%s was refused: it is larger than %d bytes, the most a download may be; nothing was kept", what, max))
		case err != nil:
			s.event(fmt.Sprintf("%s failed: %v; nothing was kept", what, err))
		default:
			s.event(fmt.Sprintf("%s was saved as %s (%d bytes)", what, file, size))
		}
	}()
}

type downloadTooBigError struct{}

func (*downloadTooBigError) Error() string { return "the download is over the size bound" }

// fetchDownload saves rawURL's body in path, at most max bytes; a larger
// body is removed and reported as *downloadTooBigError.
func (s *Session) fetchDownload(rawURL, path string, max int64) (int64, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return 0, err
	}
	var body io.Reader
	switch strings.ToLower(u.Scheme) {
	case "data":
		meta, data, ok := strings.Cut(u.Opaque, ",")
		if !ok {
			return 0, errors.New("a data: URL without data")
		}
		if int64(len(data)) > 2*max+16 { // base64 or percent-encoding, at most this long
			return 0, &downloadTooBigError{}
		}
		if strings.HasSuffix(meta, ";base64") {
			b, err := base64.StdEncoding.DecodeString(data)
			if err != nil {
				return 0, fmt.Errorf("a data: URL: %w", err)
			}
			body = strings.NewReader(string(b))
		} else {
			text, err := url.PathUnescape(data)
			if err != nil {
				return 0, fmt.Errorf("a data: URL: %w", err)
			}
			body = strings.NewReader(text)
		}
	case "http", "https":
		resp, err := s.getDownload(rawURL)
		if err != nil {
			return 0, err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return 0, fmt.Errorf("HTTP status %d", resp.StatusCode)
		}
		if resp.ContentLength > max {
			return 0, &downloadTooBigError{}
		}
		body = resp.Body
	default:
		return 0, fmt.Errorf("a %s: download cannot be kept (only http, https and data URLs)", u.Scheme)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return 0, fmt.Errorf("create %s: %w", path, err)
	}
	n, err := io.Copy(f, io.LimitReader(body, max+1))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && n > max {
		err = &downloadTooBigError{}
	}
	if err != nil {
		_ = os.Remove(path)
		return 0, err
	}
	return n, nil
}

// getDownload GETs rawURL through the session's egress proxy with the
// browser context's cookies for it, within NavigationTimeout and the
// session's life.
func (s *Session) getDownload(rawURL string) (*http.Response, error) {
	proxyURL, err := url.Parse(s.proxy.URL())
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(s.dlCtx, s.pool.cfg.NavigationTimeout)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		cancel()
		return nil, err
	}
	if cookies, err := s.bctx.Cookies(rawURL); err == nil {
		for _, c := range cookies {
			req.AddCookie(&http.Cookie{Name: c.Name, Value: c.Value})
		}
	}
	s.mu.Lock()
	page := s.page
	s.mu.Unlock()
	if ref := page.URL(); strings.HasPrefix(ref, "http") {
		req.Header.Set("Referer", ref)
	}
	tr := &http.Transport{Proxy: http.ProxyURL(proxyURL), ResponseHeaderTimeout: s.pool.cfg.NavigationTimeout}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		cancel()
		tr.CloseIdleConnections()
		return nil, err
	}
	resp.Body = &cancelBody{ReadCloser: resp.Body, done: func() { cancel(); tr.CloseIdleConnections() }}
	return resp, nil
}

type cancelBody struct {
	io.ReadCloser
	done func()
}

func (b *cancelBody) Close() error {
	err := b.ReadCloser.Close()
	b.done()
	return err
}

// waitDownloads waits (up to NavigationTimeout) until the downloads in
// flight are saved or refused, so the observation names them.
func (s *Session) waitDownloads(ctx context.Context) {
	deadline := time.Now().Add(s.pool.cfg.NavigationTimeout)
	for {
		s.mu.Lock()
		n := s.dlPending
		s.mu.Unlock()
		if n == 0 || ctx.Err() != nil || time.Now().After(deadline) {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// safeFileName keeps a suggested file name's letters, digits, dots, dashes
// and underscores (no directory, at most 100 characters); "download" when
// nothing is left.
func safeFileName(name string) string {
	name = filepath.Base(strings.ReplaceAll(name, "\\", "/"))
	var b strings.Builder
	for _, r := range name {
		if b.Len() >= 100 {
			break
		}
		switch {
		case r < 128 && (unicode.IsLetter(r) || unicode.IsDigit(r) || r == '.' || r == '-' || r == '_'):
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	out := strings.Trim(b.String(), ".")
	if out == "" {
		return "download"
	}
	return out
}

// keepsDownloads says whether downloads are kept (KeepDownloads and a
// positive MaxDownloadBytes).
func (s *Session) keepsDownloads() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.dlDir != "" && s.dlName != nil && s.pool.cfg.MaxDownloadBytes > 0
}
