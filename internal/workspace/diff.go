package workspace

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/agentdataplatform/adp/internal/core"
	"github.com/agentdataplatform/adp/internal/sandbox"
	"golang.org/x/sys/unix"
)

// The diff runs in a jail: the seed's copy bound read-only at /a, the work
// directory read-only at /b, git diff --no-index between them from / with
// empty prefixes, so that paths read a/<path> and b/<path> as in git's own
// diffs. Nothing of the agent's tree is read by the runtime itself, and
// git, which never follows a symlink here (it shows it as mode 120000 with
// its target), cannot reach outside the jail anyway.
const diffScript = `git -c core.quotepath=off -c diff.noprefix=false diff --no-index --no-color --no-ext-diff --no-textconv --no-renames --src-prefix= --dst-prefix= a b
rc=$?
if [ $rc -le 1 ]; then exit 0; fi
exit $rc
`

const diffTimeout = 60 * time.Second

// Diff returns the workspace's diff against its seed, at most maxBytes of
// it (0: DefaultDiffBytes). It runs in a jail (hence ctx).
func (w *Workspace) Diff(ctx context.Context, maxBytes int) (Diff, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return Diff{}, errClosed
	}
	if maxBytes <= 0 {
		maxBytes = DefaultDiffBytes
	}
	ctx, stop := mergeCancel(ctx, w.ctx)
	defer stop()
	special, err := removeSpecialFiles(ctx, w.work)
	if err != nil {
		return Diff{}, fmt.Errorf("workspace diff: %w", err)
	}
	lim := w.m.limits
	lim.Wall, lim.CPU = diffTimeout, diffTimeout
	// Enough to cut at a file boundary after dropping .git's sections;
	// past it the jail is killed and the head kept.
	lim.MaxOutputBytes = int64(max(4*maxBytes, 1<<20))
	lim.KeepOutputBytes = 2*int(lim.MaxOutputBytes) + 2
	res, err := w.m.jail.Run(ctx, sandbox.Request{
		Argv: shellArgv(diffScript),
		Binds: []sandbox.Bind{
			{Host: w.hostPath(seedDir), Jail: "/a"},
			{Host: w.hostPath(liveDir, workDir), Jail: "/b"},
		},
		Dir:    "/",
		Limits: lim,
	})
	if err != nil {
		return Diff{}, fmt.Errorf("workspace diff: %w", err)
	}
	cut := false
	switch res.ErrorType {
	case core.ErrNone:
	case core.ErrOutputLimit:
		cut = true
	default:
		return Diff{}, fmt.Errorf("workspace diff: git diff failed: %s (exit %d): %s", res.ErrorMessage, res.ExitCode, clip(res.Stderr, 500))
	}
	sections := dropGitDirs(res.Stdout)
	var partial string
	if cut && len(sections) > 0 {
		// The jail was killed in the middle of the last section.
		partial = sectionPath(sections[len(sections)-1])
		sections = sections[:len(sections)-1]
	}
	d := boundDiff(sections, maxBytes)
	if cut {
		d.Truncated = true
		if partial != "" {
			d.Files = append(d.Files, partial)
		}
	}
	d.Removed = special
	return d, nil
}

// removeSpecialFiles removes the FIFOs, sockets and devices beneath root
// (only a step can make them; a seed has none) and returns their paths:
// they hold no content, and git diff refuses a tree that has one. The walk
// and the removal stay beneath root and follow no link.
func removeSpecialFiles(ctx context.Context, root *os.Root) ([]string, error) {
	var found []string
	err := walkTree(ctx, root, func(dir *os.File, e dirEntry) error {
		if e.isDir() || e.isRegular() || e.isSymlink() {
			return nil
		}
		if err := unix.Unlinkat(int(dir.Fd()), e.name, 0); err != nil && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("removing %q: %w", e.path, err)
		}
		found = append(found, e.path)
		return nil
	})
	return found, err
}

// diffSections splits a git diff into its per-file sections.
func diffSections(patch string) []string {
	var out []string
	for len(patch) > 0 {
		next := strings.Index(patch[1:], "\ndiff --git ")
		if next < 0 {
			out = append(out, patch)
			break
		}
		out = append(out, patch[:next+2])
		patch = patch[next+2:]
	}
	return out
}

// sectionPath is the path of a section ("diff --git a/p b/p"), relative to
// the workspace; git quotes unusual names in C style.
func sectionPath(section string) string {
	line, _, _ := strings.Cut(section, "\n")
	rest := strings.TrimPrefix(line, "diff --git ")
	var first string
	if strings.HasPrefix(rest, `"`) {
		if q, err := strconv.QuotedPrefix(rest); err == nil {
			first, _ = strconv.Unquote(q)
		}
	} else {
		// Both sides name the same path (no renames): "X/p Y/p".
		first = rest[:len(rest)/2]
	}
	if len(first) > 2 && (strings.HasPrefix(first, "a/") || strings.HasPrefix(first, "b/")) {
		return first[2:]
	}
	return first
}

// dropGitDirs removes the sections of files under a .git directory: the
// repository's own bookkeeping is not the agent's change.
func dropGitDirs(patch string) []string {
	var keep []string
	for _, s := range diffSections(patch) {
		p := sectionPath(s)
		if p == ".git" || strings.HasPrefix(p, ".git/") || strings.Contains(p, "/.git/") {
			continue
		}
		keep = append(keep, s)
	}
	return keep
}

// boundDiff joins sections up to maxBytes, whole sections only (the first
// one cut if even it does not fit), and lists the changed files.
func boundDiff(sections []string, maxBytes int) Diff {
	var d Diff
	var b strings.Builder
	for _, s := range sections {
		d.Files = append(d.Files, sectionPath(s))
		if d.Truncated {
			continue
		}
		if b.Len()+len(s) > maxBytes {
			d.Truncated = true
			if b.Len() == 0 {
				b.WriteString(trimRuneEnd(s[:maxBytes]))
			}
			continue
		}
		b.WriteString(s)
	}
	d.Patch = b.String()
	return d
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return trimRuneEnd(s[:n]) + "..."
}
