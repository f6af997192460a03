package testsupport

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// DocBlock is one fenced code block of a document.
type DocBlock struct {
	File string // relative to the repository root
	Line int    // of the opening fence, 1-based
	Lang string // the fence's info string: "sh", "json"
	Text string // the block's content, without the fences
}

// Commands returns the block's command lines as a shell reads them: one per
// line, a line ending in a backslash joined with the next, blank lines left
// out.
func (b DocBlock) Commands() []string {
	var cmds []string
	var cur strings.Builder
	for _, l := range strings.Split(b.Text, "\n") {
		if strings.HasSuffix(l, `\`) {
			cur.WriteString(strings.TrimSuffix(l, `\`))
			continue
		}
		cur.WriteString(l)
		if c := cur.String(); strings.TrimSpace(c) != "" {
			cmds = append(cmds, c)
		}
		cur.Reset()
	}
	return cmds
}

// DocBlocks returns the fenced code blocks of the document at rel (a path
// from the repository root) whose info string is lang, in order.
func DocBlocks(t testing.TB, rel, lang string) []DocBlock {
	t.Helper()
	root, ok := repoRoot()
	if !ok {
		t.Fatal("repository root not found")
	}
	b, err := os.ReadFile(filepath.Join(root, rel))
	if err != nil {
		t.Fatal(err)
	}
	var blocks []DocBlock
	lines := strings.Split(string(b), "\n")
	for i := 0; i < len(lines); i++ {
		info, ok := strings.CutPrefix(lines[i], "```")
		if !ok || info == "" {
			continue
		}
		start := i
		var body []string
		for i++; i < len(lines) && !strings.HasPrefix(lines[i], "```"); i++ {
			body = append(body, lines[i])
		}
		if strings.TrimSpace(info) == lang {
			blocks = append(blocks, DocBlock{File: rel, Line: start + 1, Lang: lang, Text: strings.Join(body, "\n")})
		}
	}
	return blocks
}

// RepoRoot returns the repository root (the directory holding go.mod).
func RepoRoot(t testing.TB) string {
	t.Helper()
	root, ok := repoRoot()
	if !ok {
		t.Fatal("repository root not found")
	}
	return root
}
