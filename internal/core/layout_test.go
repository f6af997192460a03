package core

import "testing"

// The names of an attempt's files, as docs/tasks.md and docs/trajectories.md
// give them.
func TestAttemptFileNames(t *testing.T) {
	for _, tc := range []struct{ got, want string }{
		{TrajectoryFileName("fib", 0), "fib.json"},
		{TrajectoryFileName("fib", 3), "fib.sample-3.json"},
		{ScreenshotFileName("shop", 0, 1), "shop.step-1.png"},
		{ScreenshotFileName("shop", 2, 12), "shop.sample-2.step-12.png"},
		{DownloadFileName("shop", 0, 1, "report.pdf"), "shop.download-1-report.pdf"},
		{DownloadFileName("shop", 1, 2, "a.csv"), "shop.sample-1.download-2-a.csv"},
		{TrajectoriesPath("out"), "out/trajectories"},
		{RejectedPath("out"), "out/rejected.jsonl"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
}
