package codeagent_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"

	"github.com/agentdataplatform/adp/internal/codeagent"
	"github.com/agentdataplatform/adp/internal/core"
	"github.com/agentdataplatform/adp/internal/metrics"
	"github.com/agentdataplatform/adp/internal/rollout"
	"github.com/agentdataplatform/adp/internal/sandbox"
	"github.com/agentdataplatform/adp/internal/workspace"
)

// A workspace task's environment driven step by step, without Redis or
// the runner: Start (the seed files, the setup), a scripted policy's
// actions through Step, Evaluate (the hidden test_command), Close. The
// jail is a real one (nsjail or bubblewrap).
func ExampleAgent_Attempt() {
	ctx := context.Background()
	jail, err := sandbox.New(sandbox.BackendAuto, sandbox.Config{})
	if err != nil {
		fmt.Println("no jail:", err)
		return
	}
	seeds, _ := os.MkdirTemp("", "seeds")
	defer os.RemoveAll(seeds)
	ws, err := workspace.NewManager(workspace.Config{SeedRoot: seeds, MaxOpen: 1}, jail, sandbox.DefaultLimits())
	if err != nil {
		fmt.Println(err)
		return
	}
	a := &codeagent.Agent{Jail: jail, Limits: sandbox.DefaultLimits(), Workspaces: ws, Metrics: metrics.New(), Log: slog.New(slog.DiscardHandler)}
	task := core.TaskSpec{TaskID: "calc", TaskType: core.TaskCode, Description: "Fix add in calc.py.", MaxSteps: 5, Timeout: 60,
		Constraints: map[string]any{
			"files":        map[string]any{"calc.py": "def add(a, b):\n    return a - b\n"},
			"setup":        []any{"echo setup > notes.txt"},
			"test_command": "python3 -c 'from calc import add; assert add(2, 3) == 5'",
		}}
	at, _, err := a.Attempt(ctx, task)
	if err != nil {
		fmt.Println(err)
		return
	}
	env := at.Env
	defer env.Close()
	ctx, cancel := context.WithDeadline(ctx, at.Budget.Deadline)
	defer cancel()

	st, err := env.Start(ctx, rollout.StartOptions{Budget: at.Budget, Source: rollout.SourceScripted})
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, s := range st.Steps {
		fmt.Println("start:", s.ActionParams["purpose"], s.Success)
	}
	old, fix, answer := "a - b", "a + b", "fixed"
	policy := &rollout.Replay{From: rollout.SourceScripted, MaxSteps: task.MaxSteps, Actions: []rollout.Action{
		{Input: core.CodeAction{Action: core.CodeActionEditFile, Path: "calc.py", Old: &old, New: &fix}},
		{Input: core.CodeAction{Action: core.CodeActionBash, Command: "python3 -c 'from calc import add; print(add(2, 3))'"}},
		{Input: core.CodeAction{Action: core.CodeActionFinish, Answer: &answer}},
	}}
	policy.Reset(st.Space, st.Observation)
	obs := st.Observation
	for {
		act, ok := policy.Next(ctx, obs)
		if !ok {
			break
		}
		res, err := env.Step(ctx, act)
		if err != nil {
			fmt.Println(err)
			return
		}
		for _, s := range res.Steps {
			fmt.Println("step:", s.ActionParams["tool"], s.Success)
		}
		if res.Done {
			fmt.Println("done, finished:", res.Finished)
			break
		}
		obs = res.Observation
	}
	ev, err := env.Evaluate(ctx, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, s := range ev.Steps {
		fmt.Println("check:", s.ActionParams["purpose"], s.Success)
	}
	fmt.Println("verified:", *ev.Verified, "passed:", ev.Passed, "of", ev.Total)
	// The patch is what the agent changed: setup's notes.txt is not in it.
	fmt.Print(ev.Metadata[core.MetaWorkspaceDiff])
	// Output:
	// start: setup true
	// step: edit_file true
	// step: bash true
	// step: finish true
	// done, finished: true
	// check: verify true
	// verified: true passed: 1 of 1
	// diff --git a/calc.py b/calc.py
	// index 12ee743..4693ad3 100644
	// --- a/calc.py
	// +++ b/calc.py
	// @@ -1,2 +1,2 @@
	//  def add(a, b):
	// -    return a - b
	// +    return a + b
}

// A program task's environment driven step by step: each Step runs a
// program in a fresh jail (a program with tests runs under the test
// harness: two steps, its run and the hidden tests' verdict); Evaluate
// says what the last clean program established.
func ExampleAgent_Attempt_program() {
	ctx := context.Background()
	jail, err := sandbox.New(sandbox.BackendAuto, sandbox.Config{})
	if err != nil {
		fmt.Println("no jail:", err)
		return
	}
	a := &codeagent.Agent{Jail: jail, Limits: sandbox.DefaultLimits(), Metrics: metrics.New(), Log: slog.New(slog.DiscardHandler)}
	task := core.TaskSpec{TaskID: "double", TaskType: core.TaskCode, Description: "Write double(x).", MaxSteps: 5, Timeout: 60,
		Constraints: map[string]any{"tests": "assert double(21) == 42"}}
	at, _, err := a.Attempt(ctx, task)
	if err != nil {
		fmt.Println(err)
		return
	}
	env := at.Env
	defer env.Close()
	ctx, cancel := context.WithDeadline(ctx, at.Budget.Deadline)
	defer cancel()
	st, err := env.Start(ctx, rollout.StartOptions{Budget: at.Budget, Source: rollout.SourceScripted})
	if err != nil {
		fmt.Println(err)
		return
	}
	policy := &rollout.Replay{From: rollout.SourceScripted, MaxSteps: task.MaxSteps, Actions: []rollout.Action{
		{Input: codeagent.Program{Code: "def double(x):\n    return x + 2\n"}},
		{Input: codeagent.Program{Code: "def double(x):\n    return 2 * x\n"}},
	}}
	policy.Reset(st.Space, st.Observation)
	obs := st.Observation
	for {
		act, ok := policy.Next(ctx, obs)
		if !ok {
			break
		}
		res, err := env.Step(ctx, act)
		if err != nil {
			fmt.Println(err)
			return
		}
		for _, s := range res.Steps {
			fmt.Println("step:", s.ActionParams["purpose"], s.Success)
		}
		if res.Done {
			break
		}
		obs = res.Observation
	}
	ev, err := env.Evaluate(ctx, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("verified:", *ev.Verified, "passed:", ev.Passed, "of", ev.Total)
	// Output:
	// step: run true
	// step: verify false
	// step: run true
	// step: verify true
	// verified: true passed: 1 of 1
}
