package sandbox

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestTmpfsInodes(t *testing.T) {
	for size, want := range map[int64]int64{64 << 20: 4096, 16 << 20: 1024, 1 << 20: 1024, 1 << 30: 65536} {
		if got := tmpfsInodes(size); got != want {
			t.Errorf("tmpfsInodes(%d) = %d, want %d", size, got, want)
		}
	}
}

// TestJailEnded: a live process has not ended; a zombie (not yet reaped)
// and a reaped process have.
func TestJailEnded(t *testing.T) {
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(pidfd)
	if jailEnded(pidfd, 50*time.Millisecond) {
		t.Error("a live process counts as ended")
	}
	_ = cmd.Process.Kill()
	for i := 0; i < 200; i++ { // a zombie until reaped
		if b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); strings.Contains(string(b), ") Z ") {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !jailEnded(pidfd, time.Second) {
		t.Error("a zombie counts as running")
	}
	_ = cmd.Wait()
	if !jailEnded(pidfd, time.Second) {
		t.Error("a reaped process counts as running")
	}
}
