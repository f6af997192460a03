package workspace

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/agentdataplatform/adp/internal/core"
)

// The file tools run on the runtime's side, beneath the work directory's
// os.Root: a path the model gives (relative to /workspace, or absolute
// under it) is resolved by the kernel beneath that root, so a symlink to
// /etc/shadow, to / or out through a symlinked directory is refused, and
// only regular files are read or written.

// toolPath turns a path the model gave into one relative to the work
// directory, or a *ToolError.
func (w *Workspace) toolPath(p string) (string, error) {
	orig, dir := p, w.jailDir
	if p == dir || p == dir+"/" {
		return ".", nil
	}
	if strings.HasPrefix(p, "/") {
		rest, ok := strings.CutPrefix(p, dir+"/")
		if !ok {
			return "", &ToolError{Msg: fmt.Sprintf("%s is outside the workspace: give a path relative to %s or beneath it", orig, dir)}
		}
		p = rest
	}
	rel, ok := localPath(p)
	if !ok {
		return "", &ToolError{Msg: fmt.Sprintf("%s is outside the workspace: give a path relative to %s or beneath it, without ..", orig, dir)}
	}
	return rel, nil
}

// toolError turns a filesystem error into what the model should see.
func toolError(p string, err error) error {
	var te *ToolError
	switch {
	case errors.As(err, &te):
		return err
	case errors.Is(err, fs.ErrNotExist):
		return &ToolError{Msg: fmt.Sprintf("%s: no such file", p)}
	case errors.Is(err, unix.ENOSPC), errors.Is(err, unix.EDQUOT):
		return &ToolError{Msg: fmt.Sprintf("%s: the workspace reached its cap: the attempt ends here", p), ErrorType: core.ErrOutputLimit}
	case errors.Is(err, unix.ELOOP), strings.Contains(err.Error(), "path escapes"):
		return &ToolError{Msg: fmt.Sprintf("%s: the path leads out of the workspace (through a symlink or ..): refused", p)}
	case errors.Is(err, unix.EISDIR):
		return &ToolError{Msg: fmt.Sprintf("%s is a directory", p)}
	case errors.Is(err, unix.ENOTDIR):
		return &ToolError{Msg: fmt.Sprintf("%s: a component of the path is not a directory", p)}
	case errors.Is(err, fs.ErrPermission):
		return &ToolError{Msg: fmt.Sprintf("%s: permission denied", p)}
	}
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return &ToolError{Msg: fmt.Sprintf("%s: %v", p, pe.Err)}
	}
	return &ToolError{Msg: fmt.Sprintf("%s: %v", p, err)}
}

// maxToolFileBytes is the largest file the tools read or write: the
// per-file limit of the jail (RLIMIT_FSIZE).
func (w *Workspace) maxToolFileBytes() int64 {
	if n := w.m.limits.MaxFileBytes; n > 0 {
		return n
	}
	return 16 << 20
}

// ReadFile returns lines [offset, offset+limit) of the file at path
// (relative to /workspace, or absolute beneath /workspace); offset counts
// lines from 0, limit 0 means to the end. The text is the file's as it is
// (no line numbers), bounded by ObservationBytes: cut at a line end, with
// a last line saying which lines were shown and how to read on. A binary
// file (a NUL byte) is not shown. Errors a model should see are
// *ToolError.
func (w *Workspace) ReadFile(p string, offset, limit int) (string, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return "", errClosed
	}
	rel, err := w.toolPath(p)
	if err != nil {
		return "", err
	}
	if offset < 0 || limit < 0 {
		return "", &ToolError{Msg: "offset and limit must not be negative"}
	}
	data, err := readRegular(w.work, rel, w.maxToolFileBytes())
	if err != nil {
		return "", toolError(p, err)
	}
	if bytes.IndexByte(data[:min(len(data), 8000)], 0) >= 0 {
		return "", &ToolError{Msg: fmt.Sprintf("%s is a binary file (%d bytes): not shown; inspect it with bash (od, xxd)", p, len(data))}
	}
	lines := strings.SplitAfter(strings.ToValidUTF8(string(data), "\uFFFD"), "\n")
	if lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	total := len(lines)
	if offset > total {
		return "", &ToolError{Msg: fmt.Sprintf("%s has %d lines: offset %d is past its end", p, total, offset)}
	}
	end := total
	if limit > 0 {
		end = min(total, offset+limit)
	}
	budget := w.m.cfg.ObservationBytes
	var b strings.Builder
	shown := offset
	for _, l := range lines[offset:end] {
		if b.Len()+len(l) > budget && shown > offset {
			break
		}
		if b.Len()+len(l) > budget { // one line longer than the budget
			cut, _ := cutMiddle(l, budget)
			b.WriteString(cut)
			shown++
			break
		}
		b.WriteString(l)
		shown++
	}
	if shown < end {
		if !strings.HasSuffix(b.String(), "\n") {
			b.WriteString("\n")
		}
		fmt.Fprintf(&b, "[lines %d to %d of %d shown; read on with offset=%d]\n", offset, shown-1, total, shown)
	}
	return b.String(), nil
}

// WriteFile creates or replaces the file at path with content, making
// parent directories. Errors a model should see are *ToolError; one with
// ErrorType output_limit when the workspace reached its caps.
func (w *Workspace) WriteFile(p, content string) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return errClosed
	}
	rel, err := w.toolPath(p)
	if err != nil {
		return err
	}
	return w.write(p, rel, content)
}

func (w *Workspace) write(p, rel, content string) error {
	if int64(len(content)) > w.maxToolFileBytes() {
		return &ToolError{Msg: fmt.Sprintf("%s: %d bytes is over the per-file limit of %d", p, len(content), w.maxToolFileBytes())}
	}
	if err := writeFile(w.work, rel, []byte(content), 0o644, w.m.owner); err != nil {
		return toolError(p, err)
	}
	if note := w.checkCaps(); note != "" {
		return &ToolError{Msg: p + ": " + note, ErrorType: core.ErrOutputLimit}
	}
	return nil
}

// EditFile replaces the one occurrence of old in the file at path with
// new; no occurrence or several are a *ToolError (saying how many), as
// is an empty old.
func (w *Workspace) EditFile(p, old, new string) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return errClosed
	}
	rel, err := w.toolPath(p)
	if err != nil {
		return err
	}
	if old == "" {
		return &ToolError{Msg: "edit_file: old must not be empty"}
	}
	data, err := readRegular(w.work, rel, w.maxToolFileBytes())
	if err != nil {
		return toolError(p, err)
	}
	switch n := strings.Count(string(data), old); n {
	case 1:
	case 0:
		return &ToolError{Msg: fmt.Sprintf("%s: old text not found; it must match the file exactly, whitespace included", p)}
	default:
		return &ToolError{Msg: fmt.Sprintf("%s: old text occurs %d times; include more of the surrounding lines so that it occurs once", p, n)}
	}
	return w.write(p, rel, strings.Replace(string(data), old, new, 1))
}

var (
	_ = os.ErrNotExist
	_ = path.Clean
	_ = syscall.O_NONBLOCK
)
