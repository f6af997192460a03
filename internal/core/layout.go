package core

import (
	"path/filepath"
	"strconv"
)

// The layout of OUTPUT_DIR: every name the platform writes there is named
// here, and only here.
const (
	// TrajectoriesDir holds the trajectory files (TrajectoryFileName) and,
	// beside them, what web attempts keep: screenshots (ScreenshotFileName)
	// and downloads (DownloadFileName). The runtimes write it; adpctl's
	// stats, report and export read it.
	TrajectoriesDir = "trajectories"
	// RejectedFile gets one JSON line per task line the dispatcher
	// rejected, with the reason.
	RejectedFile = "rejected.jsonl"
	// LogsDir holds the logs (<binary>.log, redis.log) and final metrics
	// (<binary>.metrics.prom) of the processes `adpctl up` starts.
	LogsDir = "logs"
	// RedisDataDir is the data directory of the redis-server `adpctl up`
	// starts.
	RedisDataDir = "redis"
)

// TrajectoriesPath is the trajectory directory of output directory out.
func TrajectoriesPath(out string) string { return filepath.Join(out, TrajectoriesDir) }

// RejectedPath is the rejected-lines file of output directory out.
func RejectedPath(out string) string { return filepath.Join(out, RejectedFile) }

// ScreenshotFileName names the screenshot of step n (from 1) of attempt k
// of task id: <attempt>.step-<n>.png, by the attempt as its trajectory file
// is (AttemptName), so attempts do not overwrite each other's.
func ScreenshotFileName(id string, k, n int) string {
	return AttemptName(id, k) + ".step-" + strconv.Itoa(n) + ".png"
}

// DownloadFileName names the n-th download (from 1) attempt k of task id
// kept: <attempt>.download-<n>-<name>, name being the site's suggestion
// already reduced to a safe file name.
func DownloadFileName(id string, k, n int, name string) string {
	return AttemptName(id, k) + ".download-" + strconv.Itoa(n) + "-" + name
}
