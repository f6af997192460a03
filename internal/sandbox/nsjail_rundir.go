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
