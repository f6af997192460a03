package service_test

import (
	"testing"

	"github.com/agentdataplatform/adp/internal/llm"
	"github.com/agentdataplatform/adp/internal/service"
	"github.com/agentdataplatform/adp/internal/testsupport"
)

// The runtimes' LLM defaults are the llm package's.
func TestLLMDefaultsAreTheClients(t *testing.T) {
	testsupport.CheckEnvDefaults(t, &service.RuntimeConfig{}, map[string]any{
		"LLM_TIMEOUT":        llm.DefaultRequestTimeout,
		"LLM_MAX_CONCURRENT": llm.DefaultMaxConcurrent,
		"LLM_MAX_RETRIES":    llm.DefaultMaxRetries,
		"LLM_TOP_LOGPROBS":   llm.DefaultTopLogprobs,
	})
}
