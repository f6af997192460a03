// Package rollout runs one attempt of a task: a Policy chooses actions, an
// Environment performs them, and one loop (Runner.Run) records every step
// and ends in one Outcome, from which the trajectory's success, reward,
// exit_reason and error are derived in one place (Outcome.Conclude).
//
// The shape is Gym's reset/step (Start, Step), BrowserGym's task
// setup/validate (Start, Evaluate) and SWE-ReX's typed actions and
// observations: an environment can be started, stepped and evaluated on its
// own, by a runtime, a test or a server, whatever chooses its actions.
package rollout

import (
	"context"

	"github.com/agentdataplatform/adp/internal/core"
	"github.com/agentdataplatform/adp/internal/llm"
	"github.com/agentdataplatform/adp/internal/templatecache"
)

// Environment is the life of one attempt of one task: it owns the
// attempt's resources (a jail, a workspace, a browser page) and their
// limits. Start is called once, then Step for each action until a Result
// is Done or the policy stops, then Evaluate (unless Start ended the
// attempt as an invalid task, or no source had actions), then Close,
// always.
//
// A returned error is a failure of the runtime (a jail that did not
// launch, the host's file system): the attempt is retried on another
// delivery and nothing is written. Everything that is the task's or the
// agent's doing is a value: a step that failed, an End.
type Environment interface {
	// Start prepares the attempt (seed files, setup commands, the start
	// page) and returns what the policy is told first: the observation,
	// and the action space (instructions and tools) a model is offered.
	// The steps Start made (setup, the opening goto) are in its Result.
	Start(ctx context.Context, opts StartOptions) (Start, error)
	// Step performs one action and returns its observation and the step
	// records it made (usually one; none for an answer or an action that
	// could not be decoded; two for a program run with its tests).
	Step(ctx context.Context, a Action) (Result, error)
	// Evaluate runs the task's own check, hidden from the policy, and
	// says what the attempt produced. end is what ended the attempt early
	// (the environment's own End, or the policy's failure, such as the
	// model unreachable); nil when the policy ended normally. After an
	// end the check does not run; the environment records what it can
	// (a workspace's diff, the final page).
	Evaluate(ctx context.Context, end *Failure) (Evaluation, error)
	// Close releases the attempt's resources.
	Close() error
}

// Cacheable is an Environment whose successes the template cache keeps
// (programs, web action sequences; not workspaces: a workspace task is its
// files as much as its description).
type Cacheable interface {
	Environment
	// CacheKey names the task in the template cache; the task's check is
	// part of it.
	CacheKey() string
	// Replay returns the actions of a cached entry; false when the entry
	// is not one this environment can replay (its kind, unreadable).
	Replay(e templatecache.Entry) ([]Action, bool)
	// Entry is what to cache after a success (Kind and Program or
	// Actions); false when there is nothing to cache.
	Entry() (templatecache.Entry, bool)
}

// StartOptions say how the attempt will be acted on.
type StartOptions struct {
	// Budget is the attempt's time (Runner.Run's context has its
	// deadline); environments cut their step timeouts to it.
	Budget Budget
	// Source is who will choose the actions. The web environment takes
	// screenshots for a model's observations only (WEB_VISION).
	Source Source
}

// Start is what Environment.Start returns.
type Start struct {
	Result
	// Space is what a model is offered: its instructions (the system
	// prompt) and the tools it may call. Result.Observation.Text is the
	// first user message.
	Space ActionSpace
	// Invalid: the task itself is invalid here (its seed, its setup, its
	// environment image): Result.End says why; exit_reason invalid_task;
	// no policy acts and Evaluate is not called.
	Invalid bool
}

// ActionSpace is what a model is offered.
type ActionSpace struct {
	// Instructions is the system prompt.
	Instructions string
	// Tools are the actions as tools; a model's call of one comes back to
	// Step as Action.Call, already checked against these definitions.
	Tools []llm.Tool
}

// Action is one thing a policy does: a model's tool call (Call), a typed
// action of the environment's own kind (Input), or a text answer
// (Answer). Exactly one is set.
type Action struct {
	// Source is who chose it (stamped by the loop): a web environment
	// treats what a model types as suspect, what the task's actions type
	// as the task's.
	Source Source
	// Call is a model's tool call as it sent it; its name is one of the
	// ActionSpace's tools and its arguments are JSON. The environment
	// decodes them with the rules of its typed actions; an undecodable
	// call is an observation "error: ..." and no step.
	Call *llm.ToolCall
	// Input is a typed action of the environment's kind: Program for the
	// program environment, core.CodeAction for a workspace, the web
	// environment's own action type.
	Input any
	// Answer is a model's reply without a tool call. The environment
	// accepts it (Result.Done) or answers with feedback safe for the
	// policy (Result.Observation.Text, never a hidden check's text) to go
	// on.
	Answer *string
}

// Observation is what the policy is told after an action (or at the start).
type Observation struct {
	// Text is the observation: a tool result, the first user message, or
	// an answer's feedback.
	Text string
	// Image is a PNG the policy may look at (a web page's screenshot for a
	// vision model), ImageNote what it is; nil when there is none. A model
	// policy sends only the latest image of a reply's calls.
	Image     []byte
	ImageNote string
}

// Result is what Start or a Step did.
type Result struct {
	Observation Observation
	// Steps are the trajectory steps made, in order; the loop appends
	// them (and numbers them). Environments never write a trajectory.
	Steps []core.ExecutionStep
	// Done: no more actions (a finish, an accepted answer, an End, a
	// replay stopped at its first failed step).
	Done bool
	// Finished: a finish action ended the attempt, and exit_reason is
	// "finished" even when the actions were replayed (workspace). A model's
	// call that ends the attempt is "finished" without it. The web
	// environment leaves it false: its replayed finish stays "replayed".
	Finished bool
	// End is the failure that ended the attempt before the agent was done
	// (the task's timeout, the workspace's cap, a dead browser, a blocked
	// start page); it implies Done.
	End *Failure
	// Metadata is merged into the trajectory's metadata (nil: none).
	Metadata core.Metadata
}

// Failure is why an attempt ended without the agent being done, or why it
// failed as a whole.
type Failure struct {
	Type    core.ErrorType
	Message string
}

// Evaluation is what the task's own check found, and what the attempt
// produced. The policy never sees it, except Feedback.
type Evaluation struct {
	// Checked: the task has a check (a verifier: expected output, tests,
	// test_command, expected text, reward_script, ...). A checked task
	// whose Verified is nil did not have its check run and never succeeds.
	Checked bool
	// Verified is the check's verdict; nil when it did not run.
	Verified *bool
	// Passed of Total checks passed: the reward (core.Trajectory.SetReward)
	// unless Reward is set.
	Passed, Total int
	// Reward is the check's own number (a page's reward_script, a
	// workspace's reward file), as is; nil: Passed/Total.
	Reward *float64
	// Rewards are the check's named rewards beside Reward (a workspace's
	// reward.json: metadata.verifier_rewards).
	Rewards map[string]float64
	// Message is the first failed check's message, for the record.
	Message string
	// Feedback is what the policy may be told of a failed check.
	Feedback string
	// Tampered: the check found its own code altered or the harness
	// reached for (exit_reason tampered).
	Tampered bool
	// Failure is a failure of the attempt that is not the check's verdict
	// (the program never ran cleanly: its last step's error; the
	// workspace's diff is incomplete); it fails the attempt.
	Failure *Failure
	// Steps are the trajectory steps the check made (a workspace's
	// verify step); the loop appends them.
	Steps []core.ExecutionStep
	// FinalResult is the trajectory's final_result.
	FinalResult string
	// Metadata is merged into the trajectory's metadata: flags, the
	// workspace's diff, the final URL, test output, ...
	Metadata core.Metadata
}

// Policy chooses actions. Reset is called once with the action space and
// the start's observation; Next is called for each next action with the
// observation of the previous one, until it returns false, or a Result is
// Done.
type Policy interface {
	// Source is what the trajectory records as metadata.source.
	Source() Source
	// Reset prepares the policy for an attempt.
	Reset(space ActionSpace, start Observation)
	// Next returns the action after obs (for the first action, obs is
	// the start's observation again); false when the policy stops.
	Next(ctx context.Context, obs Observation) (Action, bool)
	// End says how the policy ended: once, after the last Next (or after
	// a Done result).
	End() PolicyEnd
}

// PolicyEnd is how a policy ended.
type PolicyEnd struct {
	// Stop is why it stopped: a model's answered, max_steps, max_turns;
	// a replay's max_steps; "" when it ran out of actions.
	Stop core.ExitReason
	// Failure: the policy could not go on (the model unreachable or
	// refusing, no rule for the task). It ends the attempt.
	Failure *Failure
	// NoSource: the policy had no actions at all for the task (no rule
	// applies): exit_reason no_source, the check does not run.
	NoSource bool
	// Steps are records the policy made (a failed model call's step).
	Steps []core.ExecutionStep
	// Rule names the rule that chose the actions (metadata.rule).
	Rule string
	// Model is the model's exchange; nil when no model was asked.
	Model *Exchange
}

// Source is where an attempt's actions came from: metadata.source.
type Source string

// The sources, in the order the Runner tries them.
const (
	SourceScripted Source = "scripted" // the task brought its program or actions
	SourceCache    Source = "cache"    // the template cache
	SourceLLM      Source = "llm"
	SourceRules    Source = "rules" // the blueprint's heuristics, without an LLM
	SourceNone     Source = "none"  // no source had anything for the task
)
