package sandbox

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// streamBuffer keeps the first and the last keep/2 bytes of a stream and
// counts the rest. A traceback is at the end of stderr and a program's
// first lines at the start of stdout, so both ends matter.
type streamBuffer struct {
	keep  int
	head  []byte
	tail  []byte // ring buffer once full
	start int    // index of the oldest byte in tail
	total int64
}

func newStreamBuffer(keep int) *streamBuffer {
	return &streamBuffer{keep: keep}
}

func (b *streamBuffer) Write(p []byte) {
	b.total += int64(len(p))
	headCap := b.keep - b.keep/2
	if n := headCap - len(b.head); n > 0 {
		if n > len(p) {
			n = len(p)
		}
		b.head = append(b.head, p[:n]...)
		p = p[n:]
	}
	tailCap := b.keep / 2
	if tailCap == 0 || len(p) == 0 {
		return
	}
	if len(p) >= tailCap {
		b.tail = append(b.tail[:0], p[len(p)-tailCap:]...)
		b.start = 0
		return
	}
	if room := tailCap - len(b.tail); room > 0 {
		n := min(room, len(p))
		b.tail = append(b.tail, p[:n]...)
		p = p[n:]
	}
	for len(p) > 0 { // ring is full: overwrite the oldest bytes
		n := copy(b.tail[b.start:], p)
		p = p[n:]
		b.start = (b.start + n) % tailCap
	}
}

// String returns the kept output as valid UTF-8 and whether anything was
// dropped.
func (b *streamBuffer) String() (string, bool) {
	tail := make([]byte, 0, len(b.tail))
	tail = append(tail, b.tail[b.start:]...)
	tail = append(tail, b.tail[:b.start]...)
	kept := int64(len(b.head) + len(tail))
	if kept == b.total {
		return strings.ToValidUTF8(string(b.head)+string(tail), "\uFFFD"), false
	}
	// Cut at rune boundaries so a multi-byte character split by the cut is
	// dropped rather than turned into garbage.
	head := trimPartialRuneEnd(b.head)
	tail = trimPartialRuneStart(tail)
	dropped := b.total - int64(len(head)) - int64(len(tail))
	s := string(head) + fmt.Sprintf("\n... [%d bytes omitted] ...\n", dropped) + string(tail)
	return strings.ToValidUTF8(s, "\uFFFD"), true
}

func trimPartialRuneEnd(p []byte) []byte {
	for i := 1; i <= utf8.UTFMax && i <= len(p); i++ {
		c := p[len(p)-i]
		if c < utf8.RuneSelf { // ASCII: nothing partial after it
			return p
		}
		if utf8.RuneStart(c) {
			if r, size := utf8.DecodeRune(p[len(p)-i:]); r == utf8.RuneError && size <= 1 {
				return p[:len(p)-i]
			}
			return p
		}
	}
	return p
}

func trimPartialRuneStart(p []byte) []byte {
	for i := 0; i < utf8.UTFMax && i < len(p); i++ {
		if utf8.RuneStart(p[i]) {
			return p[i:]
		}
	}
	return p
}
