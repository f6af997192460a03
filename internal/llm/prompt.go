package llm

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// The completions rendering of a conversation (APICompletions), for
// models without a chat template: each message is its role's label, a
// colon, a space and the content ("User: Task: …"), messages are separated
// by a blank line, and the prompt ends with "Assistant:" for the model to
// continue. An assistant message is rendered as "Assistant:" followed by
// its content exactly as the model produced it (no space added), so each
// prompt starts with the previous prompt and the completion it got: the
// model is never shown a re-tokenised version of its own text.
const (
	promptSeparator = "\n\n"
	promptCue       = "Assistant:"
)

// PromptStop are the stop sequences a completions request carries, so the
// model ends its turn where the next label would begin.
var PromptStop = []string{"\nUser:", "\nSystem:", "\nAssistant:"}

// RenderPrompt renders messages as one completions prompt, ending with the
// cue for the assistant's turn.
func RenderPrompt(messages []Message) string {
	var b strings.Builder
	for _, m := range messages {
		if m.Role == RoleAssistant {
			b.WriteString(promptCue)
			b.WriteString(m.Content)
		} else {
			b.WriteString(roleLabel(m.Role))
			b.WriteString(": ")
			b.WriteString(m.Content)
		}
		b.WriteString(promptSeparator)
	}
	b.WriteString(promptCue)
	return b.String()
}

// roleLabel capitalises a role: "user" → "User".
func roleLabel(role string) string {
	r, n := utf8.DecodeRuneInString(role)
	if n == 0 {
		return "User"
	}
	return string(unicode.ToUpper(r)) + role[n:]
}
