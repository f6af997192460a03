// Package llm is a client for OpenAI-compatible chat completions (vLLM,
// Ollama, OpenAI, llama.cpp server) with tool calling, and for the plain
// completions endpoint (APICompletions) of models without a chat template. Both agent runtimes use
// it: the sandbox runtime offers a run_python tool, the web runtime one tool
// per browser action.
//
// What the client does for the caller:
//   - bounds in-flight requests per process (Config.MaxConcurrent);
//   - bounds each HTTP attempt (Config.RequestTimeout) while ctx bounds the
//     whole call, including the wait for a slot and the backoff sleeps;
//   - retries 408, 429, 5xx and transport errors with exponential backoff and
//     jitter, honouring Retry-After; other 4xx fail at once with an *APIError
//     (Refused; a request too long for the model's context wraps
//     ErrContextExceeded), and a failed call still returns what was sent
//     (Response.Exchange without a reply);
//   - never puts the API key in an error or a log value;
//   - returns tool calls as the model wrote them (only a missing id or type is
//     filled in), so a malformed call becomes an observation for the model
//     rather than a crash: see ValidateToolCall and ParseArguments;
//   - optionally recovers tool calls a small model wrote as JSON in the
//     message content (Config.ToolCallsFromContent, ExtractToolCalls);
//   - sends each request's sampling settings (Request.Params, resolved per
//     attempt by Config.ParamsFor) and, with Config.Logprobs, asks for
//     logprobs (Config.TopLogprobs alternatives) and token ids, returned as
//     the server sent them with the response's own id, model and
//     system_fingerprint;
//   - in ToolModeText sends no tools field (the caller describes the tools
//     in the prompt); with APICompletions renders the messages as one
//     prompt (RenderPrompt) and records it (Exchange.Prompt);
//   - reports every attempt to an optional Observer, so the caller can count
//     requests, retries and tokens without this package importing Prometheus.
//
// The model policy itself (prompting, handing out tool calls, max_steps)
// lives in internal/rollout; this package only speaks the protocol.
package llm
