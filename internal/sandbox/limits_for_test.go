package sandbox

import (
	"testing"
	"time"

	"github.com/agentdataplatform/adp/internal/core"
)

func TestLimitsFor(t *testing.T) {
	base := DefaultLimits()
	for _, tc := range []struct {
		name string
		res  core.Resources
		want func(l *Limits)
	}{
		{"nothing asked", core.Resources{}, func(*Limits) {}},
		{"memory", core.Resources{MemoryMB: 3072}, func(l *Limits) { l.MemoryBytes = 3 << 30 }},
		{"less memory", core.Resources{MemoryMB: 128}, func(l *Limits) { l.MemoryBytes = 128 << 20 }},
		{"processes and threads", core.Resources{MaxProcs: 40, MaxThreads: 1000}, func(l *Limits) { l.MaxProcs, l.MaxThreads = 40, 1000 }},
		{"cpus round up", core.Resources{CPUs: 1.5}, func(l *Limits) { l.CPUs = 2 }},
		{"workspace is not the jail's", core.Resources{WorkspaceMB: 2048}, func(*Limits) {}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want := base
			tc.want(&want)
			if got := base.For(tc.res); got != want {
				t.Errorf("For(%+v) = %+v, want %+v", tc.res, got, want)
			}
		})
	}
	// The CPU time limit scales with cpus, per run as the caller sets CPU.
	l := Limits{CPU: 10 * time.Second}.For(core.Resources{CPUs: 4}).withDefaults()
	if got := l.cpuTime(); got != 40*time.Second {
		t.Errorf("cpuTime with 4 cpus = %s, want 40s", got)
	}
	if got := rlimits(l, cgroupSupport{}); got[1].name != "RLIMIT_CPU" || got[1].soft != 40 || got[1].hard != 41 {
		t.Errorf("RLIMIT_CPU with 4 cpus = %+v, want 40/41", got[1])
	}
}
