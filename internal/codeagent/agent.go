// Package codeagent is the sandbox runtime's environments and their wiring:
// the program environment (a Python program, scripted in the task, from the
// template cache, from an LLM, or from the blueprint's rules, run in the
// sandbox and verified by its expected output and tests under the test
// harness) and the workspace environment (an attempt in a directory over
// many steps, verified by a hidden test_command). Agent runs them with the
// rollout engine.
package codeagent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/agentdataplatform/adp/internal/core"
	"github.com/agentdataplatform/adp/internal/imagestore"
	"github.com/agentdataplatform/adp/internal/llm"
	"github.com/agentdataplatform/adp/internal/metrics"
	"github.com/agentdataplatform/adp/internal/rollout"
	"github.com/agentdataplatform/adp/internal/sandbox"
	"github.com/agentdataplatform/adp/internal/templatecache"
	"github.com/agentdataplatform/adp/internal/workspace"
)

// Agent is the sandbox runtime's worker.Executor.
type Agent struct {
	Jail   sandbox.Jail
	Limits sandbox.Limits
	// Workspaces opens the workspaces of workspace tasks (issue 16); nil
	// when the runtime has none.
	Workspaces *workspace.Manager
	// LLM generates programs; nil means no LLM is configured.
	LLM *llm.Client
	// Cache is the template cache; nil disables it.
	Cache   *templatecache.Cache
	Metrics *metrics.Set
	Log     *slog.Logger
	// Environments obtains the images tasks name as their environment
	// (an *imagestore.Store); nil when the runtime has no image store.
	Environments Environments
	// Caps bound what a task's constraints.resources may ask
	// (SANDBOX_CAP_*); the zero value is core.DefaultResourceCaps.
	Caps core.ResourceCaps

	harnessMu sync.Mutex
	harnesses map[string]harness // by interpreter: "" (the host's) or an image id
}

// Environments obtains a task's environment: imagestore.Store.Get.
type Environments interface {
	Get(ctx context.Context, env string) (*imagestore.Handle, error)
}

// ErrJail is wrapped by Execute's error when the jail itself failed: a
// system error, retried on another delivery.
var ErrJail = errors.New("jail failed")

// Execute runs task and returns its trajectory. The error is non-nil only
// for system failures (the jail could not launch).
func (a *Agent) Execute(ctx context.Context, task core.TaskSpec) (*core.Trajectory, error) {
	at, tr, err := a.Attempt(ctx, task)
	if tr != nil || err != nil {
		return tr, err
	}
	var m rollout.Model
	if a.LLM != nil {
		m = a.LLM
	}
	run := rollout.Runner{Cache: a.Cache, Model: m, Metrics: a.Metrics, Log: a.Log}
	tr, err = run.Run(ctx, at)
	if err != nil {
		return nil, fmt.Errorf("task %s: %w: %w", task.TaskID, ErrJail, err)
	}
	return tr, nil
}

// Attempt is the attempt of task for rollout.Runner.Run: its environment
// (a workspace environment for a workspace task, else a program
// environment; it holds the task's environment image until Close), its own
// actions, its rules and its budget (rollout.BudgetFrom ctx). A task that
// is invalid before it starts (its constraints, its environment image) is
// its trajectory instead; the error is a failure of the runtime.
func (a *Agent) Attempt(ctx context.Context, task core.TaskSpec) (rollout.Attempt, *core.Trajectory, error) {
	c, err := task.Code()
	if err != nil {
		return rollout.Attempt{}, rollout.Rejected(task, rollout.Failure{Type: core.ErrSystem, Message: "invalid constraints: " + err.Error()}), nil
	}
	if err := c.Resources.Within(a.caps(), task.TaskID); err != nil {
		// Never run with less than the task asks.
		return rollout.Attempt{}, rollout.Rejected(task, rollout.Failure{Type: core.ErrSystem, Message: err.Error()}), nil
	}
	var im image
	if why, err := im.open(ctx, a, c.Environment, task.Kind() == core.KindWorkspace); err != nil || why != "" {
		if err != nil {
			return rollout.Attempt{}, nil, fmt.Errorf("task %s: %w: %w", task.TaskID, ErrJail, err)
		}
		tr := rollout.Rejected(task, rollout.Failure{Type: core.ErrSystem, Message: why})
		if id := im.id(); id != "" {
			tr.Metadata[core.MetaEnvironmentImage] = id
		}
		im.close()
		return rollout.Attempt{}, tr, nil
	}
	at := rollout.Attempt{Task: task, Budget: rollout.BudgetFrom(ctx, task)}
	if task.Kind() == core.KindWorkspace {
		at.Env = &workspaceEnv{a: a, task: task, c: c, im: im}
		at.Rules = rollout.NoActions(rollout.Failure{Type: core.ErrNoModel,
			Message: "no LLM is configured (set LLM_BASE_URL) and the workspace task has no actions; " +
				"give it constraints.actions or configure an OpenAI-compatible LLM"})
		if c.Actions != nil {
			at.Scripted = make([]rollout.Action, len(c.Actions))
			for i, x := range c.Actions {
				at.Scripted[i] = rollout.Action{Input: x}
			}
		}
		return at, nil, nil
	}
	at.Env = &programEnv{a: a, task: task, c: c, im: im}
	at.Rules = programRules(task.Description)
	if c.Code != "" {
		at.Scripted = []rollout.Action{{Input: Program{Code: c.Code}}}
	}
	return at, nil, nil
}

// caps are the runtime's caps on a task's resources.
func (a *Agent) caps() core.ResourceCaps {
	if a.Caps == (core.ResourceCaps{}) {
		return core.DefaultResourceCaps
	}
	return a.Caps
}

// image is a task's environment image, held for the attempt.
type image struct {
	h   *imagestore.Handle
	img *sandbox.Image // nil: the host's /usr
}

// open obtains the image of a task's `environment` (none when env is "").
// why says why the image cannot be had for a reason of the task's (no such
// image, no image store here, an unusable image): the task is invalid; the
// error is a failure another try may mend (the registry unreachable).
//
// A program runs on the image's python3; a workspace needs only a root a
// jail can run its bash on (workspace.Open checks the rest).
func (im *image) open(ctx context.Context, a *Agent, env string, workspaceTask bool) (why string, err error) {
	if env == "" {
		return "", nil
	}
	if a.Environments == nil {
		return fmt.Sprintf("environment %s: this runtime has no image store (set SANDBOX_IMAGE_STORE)", env), nil
	}
	h, err := a.Environments.Get(ctx, env)
	if errors.Is(err, imagestore.ErrNoSuchImage) {
		return fmt.Sprintf("environment %s: %v", env, err), nil
	}
	if err != nil {
		return "", fmt.Errorf("environment %s: %w", env, err)
	}
	im.h = h
	im.img = &sandbox.Image{Root: h.Root, Env: h.Config.Env, WorkingDir: h.Config.WorkingDir, User: h.Config.User}
	check := sandbox.CheckImage
	if workspaceTask {
		check = sandbox.CheckImageRoot
	}
	if err := check(im.img); err != nil {
		return fmt.Sprintf("environment %s: %v", env, err), nil
	}
	return "", nil
}

// id is the image's id; "" for the host's.
func (im *image) id() string {
	if im.h == nil {
		return ""
	}
	return im.h.ID
}

// metadata records the image an attempt runs in.
func (im *image) metadata() core.Metadata {
	if im.h == nil {
		return nil
	}
	return core.Metadata{core.MetaEnvironmentImage: im.h.ID}
}

func (im *image) close() {
	if im.h != nil {
		im.h.Close()
		im.h = nil
	}
}

// harness is the test harness for the interpreter of img (nil: the
// host's; key is the image's id): harnessPy compiled by that interpreter,
// done at the first task with tests that runs on it, or harnessPy itself
// when that fails (logged; the verdicts are the same, a run costs 0.25 ms
// more of CPU).
func (a *Agent) harness(ctx context.Context, img *sandbox.Image, key string) harness {
	a.harnessMu.Lock()
	defer a.harnessMu.Unlock()
	if h, ok := a.harnesses[key]; ok {
		return h
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	h, err := compileHarness(ctx, a.Jail, a.Limits, img)
	if err != nil {
		a.Log.Warn("running the test harness from source", "image", key, "err", err)
		h = sourceHarness
	}
	if a.harnesses == nil {
		a.harnesses = map[string]harness{}
	}
	a.harnesses[key] = h
	return h
}
