package webagent

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestFirstSentenceKeepsUTF8(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     int // bytes kept
	}{
		{"short", "  hello  ", 5},
		{"ascii cut", strings.Repeat("a", 400), 300},
		{"cut inside a character", strings.Repeat("a", 299) + "é" + "tail", 299},
		{"three-byte characters", strings.Repeat("€", 200), 300 - 300%3},
		{"four-byte characters", strings.Repeat("😀", 100), 300 - 300%4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := firstSentence(tc.in)
			if !utf8.ValidString(got) || len(got) != tc.want {
				t.Errorf("firstSentence = %d bytes (valid UTF-8: %v), want %d valid bytes", len(got), utf8.ValidString(got), tc.want)
			}
		})
	}
}
