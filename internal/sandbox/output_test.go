package sandbox

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestStreamBufferKeepsAllWhenSmall(t *testing.T) {
	b := newStreamBuffer(16)
	b.Write([]byte("hello "))
	b.Write([]byte("world"))
	got, trunc := b.String()
	if got != "hello world" || trunc {
		t.Errorf("String() = %q, %v", got, trunc)
	}
	b = newStreamBuffer(16)
	b.Write([]byte("0123456789abcdef")) // exactly keep bytes
	if got, trunc := b.String(); got != "0123456789abcdef" || trunc {
		t.Errorf("String() = %q, %v", got, trunc)
	}
}

func TestStreamBufferHeadAndTail(t *testing.T) {
	for _, chunk := range []int{1, 3, 7, 64, 1000} {
		b := newStreamBuffer(10)
		var all strings.Builder
		for i := 0; i < 100; i++ {
			all.WriteByte(byte('a' + i%26))
		}
		s := all.String()
		for i := 0; i < len(s); i += chunk {
			b.Write([]byte(s[i:min(i+chunk, len(s))]))
		}
		got, trunc := b.String()
		want := s[:5] + "\n... [90 bytes omitted] ...\n" + s[95:]
		if got != want || !trunc {
			t.Errorf("chunk %d: String() = %q, %v; want %q", chunk, got, trunc, want)
		}
	}
}

func TestStreamBufferUTF8(t *testing.T) {
	// Cuts inside multi-byte characters drop the partial characters.
	b := newStreamBuffer(8)
	b.Write([]byte(strings.Repeat("é", 20))) // 2 bytes each
	got, trunc := b.String()
	if !trunc || !utf8.ValidString(got) {
		t.Fatalf("String() = %q, %v", got, trunc)
	}
	if !strings.HasPrefix(got, "éé") || !strings.HasSuffix(got, "éé") {
		t.Errorf("String() = %q, want whole characters at both ends", got)
	}
	b = newStreamBuffer(7)
	b.Write([]byte("日本語日本語日本語")) // 3 bytes each
	got, _ = b.String()
	if !utf8.ValidString(got) || strings.ContainsRune(got, utf8.RuneError) {
		t.Errorf("String() = %q: partial characters kept", got)
	}
	// Invalid UTF-8 from the program is replaced, not passed on.
	b = newStreamBuffer(100)
	b.Write([]byte("a\xffb"))
	if got, _ := b.String(); got != "a\uFFFDb" {
		t.Errorf("String() = %q", got)
	}
}
