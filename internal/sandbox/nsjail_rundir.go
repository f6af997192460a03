package sandbox

import (
	"os"
	"path/filepath"
	"strings"
	"time"
)

// staleRunDirPrefix starts the name of every per-run directory, of this
// version (runDirPrefix) and of earlier ones.
const staleRunDirPrefix = "adp-sandbox-"

// staleRunDirAge: a per-run directory younger than this may belong to a run
// another runtime sharing the work directory is starting right now (written,
// nsjail not yet started); it is left alone.
const staleRunDirAge = 5 * time.Second

// removeStaleRunDirs removes the per-run directories (the program, readable
// by the jail's uid) a crashed runtime left in workDir: those that no live process names on its command line (a live
// run's nsjail has --bindmount_ro <dir>:/sandbox) and older than
// staleRunDirAge. A jail reads its program when it starts, so removing the
// directory of a run that is somehow still going harms nothing but a
// program reading its own file again.
func removeStaleRunDirs(workDir string) {
	dirs, _ := filepath.Glob(filepath.Join(workDir, staleRunDirPrefix+"*"))
	if len(dirs) == 0 {
		return
	}
	var cmdlines []string
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		if b, err := os.ReadFile(p); err == nil && len(b) > 0 {
			cmdlines = append(cmdlines, string(b))
		}
	}
	for _, d := range dirs {
		if !isRunDir(d) {
			continue
		}
		st, err := os.Lstat(d)
		if err != nil || !st.IsDir() || time.Since(st.ModTime()) < staleRunDirAge {
			continue
		}
		live := false
		for _, c := range cmdlines {
			if strings.Contains(c, d+":"+jailCodeDir) {
				live = true
				break
			}
		}
		if !live {
			_ = os.RemoveAll(d)
		}
	}
}

// isRunDir reports whether d is a per-run directory: named by the prefix
// and a run id (16 hex digits; other names with the prefix, such as a test's
// work directory, are not), holding the program and nothing else.
func isRunDir(d string) bool {
	id, ok := strings.CutPrefix(filepath.Base(d), staleRunDirPrefix)
	if !ok || len(id) != 16 || strings.Trim(id, "0123456789abcdef") != "" {
		return false
	}
	entries, err := os.ReadDir(d)
	return err == nil && len(entries) == 1 && entries[0].Name() == scriptName && entries[0].Type().IsRegular()
}
