package core

// MetaKey names an entry of a trajectory's metadata. Every key the platform
// writes is a constant below, documented once here; docs/trajectories.md's list is
// checked against MetaKeys (TestDocsMetadataKeys).
type MetaKey string

// Metadata is a trajectory's metadata: JSON values by key.
type Metadata map[MetaKey]any

// The metadata keys. Who writes each is said in its comment.
const (
	// MetaSource is where the program or actions came from: scripted,
	// cache, llm, rules (or none). The agents.
	MetaSource MetaKey = "source"
	// MetaCacheHit is whether the template cache answered (absent for
	// scripted tasks). The agents.
	MetaCacheHit MetaKey = "cache_hit"
	// MetaCachedFrom is the source of the cached program or actions that
	// a cache hit replayed. The agents.
	MetaCachedFrom MetaKey = "cached_from"
	// MetaVerified is true or false when the task had a verifier, absent
	// otherwise. The agents.
	MetaVerified MetaKey = "verified"
	// MetaAnswer is the model's last text answer. The code agent.
	MetaAnswer MetaKey = "answer"
	// MetaCodeLength is the length of the last program that ran. The code
	// agent.
	MetaCodeLength MetaKey = "code_length"
	// MetaRule names the blueprint rule that wrote the program. The code
	// agent.
	MetaRule MetaKey = "rule"
	// MetaFinalURL is the URL of the last page. The web agent.
	MetaFinalURL MetaKey = "final_url"
	// MetaLLMCalls, MetaPromptTokens, MetaCompletionTokens and
	// MetaTotalTokens count the model calls and their tokens; MetaStopReason
	// says why the model loop ended (answered, finished, max_steps,
	// max_turns). The rollout loop (internal/rollout); a replay that hit
	// max_steps sets stop_reason too.
	MetaLLMCalls         MetaKey = "llm_calls"
	MetaPromptTokens     MetaKey = "prompt_tokens"
	MetaCompletionTokens MetaKey = "completion_tokens"
	MetaTotalTokens      MetaKey = "total_tokens"
	MetaStopReason       MetaKey = "stop_reason"
	// MetaTotalSteps, MetaDeliveries and MetaQueueWaitSeconds are the
	// number of steps, the delivery the trajectory came from, and the time
	// from submission to the start of the work. The worker.
	MetaTotalSteps       MetaKey = "total_steps"
	MetaDeliveries       MetaKey = "deliveries"
	MetaQueueWaitSeconds MetaKey = "queue_wait_seconds"
	// MetaWorkspaceDiff is a workspace task's unified diff (git's format,
	// binary files as GIT binary patches) of the workspace against its
	// state after setup (its seed when it has no setup), taken when the
	// agent stopped (before test_command ran), bounded. Absent when the
	// patch's bytes are not valid UTF-8: then MetaWorkspaceDiffBase64. The
	// code agent.
	MetaWorkspaceDiff MetaKey = "workspace_diff"
	// MetaWorkspaceDiffBase64 is the patch in standard base64 when its
	// bytes (a file's or a name's) are not valid UTF-8, which a JSON string
	// cannot hold. The code agent.
	MetaWorkspaceDiffBase64 MetaKey = "workspace_diff_base64"
	// MetaWorkspaceDiffIncomplete says why the diff is not the whole change
	// (a path past PATH_MAX, an entry that could not be read, git failing);
	// the attempt is then not a success. Absent otherwise. The code agent.
	MetaWorkspaceDiffIncomplete MetaKey = "workspace_diff_incomplete"
	// MetaWorkspaceDiffTruncated is true when workspace_diff was cut (at a
	// file boundary) to its bound; absent otherwise. The code agent.
	MetaWorkspaceDiffTruncated MetaKey = "workspace_diff_truncated"
	// MetaTestOutput is the observation of a workspace task's
	// test_command (exit code, output), which the agent never saw. The
	// code agent.
	MetaTestOutput MetaKey = "test_output"
	// MetaVerifierRewards are the named numbers a workspace task's check
	// wrote to /logs/verifier/reward.json, or {"reward": x} for
	// reward.txt, recorded when the check ran to its end with exit status
	// 0 (workspace.Verdict.Rewards); the trajectory's reward is their
	// scalar (workspace.ScalarReward). Absent otherwise. The code agent.
	MetaVerifierRewards MetaKey = "verifier_rewards"
	// MetaFlags lists what the test harness saw of a passing run that can
	// make tests pass without the work they check, one "name: meaning"
	// each: eq_ignores_argument (an __eq__ or __ne__ that ignores its
	// argument), frame (the program took a frame, so it could read its
	// caller), frame_source (its source reads frames or the stack). A
	// flagged attempt keeps its success; exports leave it out of
	// --only-success and --best-of unless --include-flagged, and the
	// template cache does not keep it. Absent when nothing was seen. The
	// code agent.
	MetaFlags MetaKey = "flags"
	// MetaSamplingIgnored says why a task's samples and sampling had no
	// effect on this attempt: no model chose its program or actions (rules,
	// or the task's own), so its attempts are alike. Absent otherwise. The
	// rollout runner (internal/rollout).
	MetaSamplingIgnored MetaKey = "sampling_ignored"
	// MetaPageInstruction is what a web task's instruction_script returned
	// (added to the prompt).
	MetaPageInstruction MetaKey = "page_instruction"
	// MetaEnvironmentImage is the id (the config digest, "sha256:...") of
	// the image a task's environment named, which every run of the
	// attempt had as its root: the name may move, the id does not. Absent
	// without an environment. The code agent.
	MetaEnvironmentImage MetaKey = "environment_image"
)

// MetaKeys lists every metadata key.
var MetaKeys = []MetaKey{
	MetaSource, MetaCacheHit, MetaCachedFrom, MetaVerified, MetaAnswer, MetaCodeLength, MetaRule,
	MetaFinalURL, MetaLLMCalls, MetaPromptTokens, MetaCompletionTokens, MetaTotalTokens, MetaStopReason,
	MetaTotalSteps, MetaDeliveries, MetaQueueWaitSeconds, MetaWorkspaceDiff, MetaWorkspaceDiffBase64, MetaWorkspaceDiffIncomplete, MetaWorkspaceDiffTruncated, MetaTestOutput, MetaVerifierRewards, MetaFlags,
	MetaSamplingIgnored, MetaPageInstruction, MetaEnvironmentImage,
}
