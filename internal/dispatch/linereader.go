package dispatch

import (
	"bufio"
	"errors"
	"io"
)

// lineReader reads newline-terminated lines of at most max bytes without
// ever buffering more than max: a longer line is skipped and reported by its
// length. It tracks the byte offset of the end of the last complete line.
type lineReader struct {
	r      *bufio.Reader
	max    int
	offset int64 // bytes consumed through the last complete line
	line   int   // number of the last complete line (1-based)
}

// readResult is one line, or a line too long to keep.
type readResult struct {
	data    []byte // without the trailing newline (and \r); valid until the next call
	line    int
	tooLong int64 // > 0: the line was this many bytes and data is nil
	// partial is set with io.EOF: the line has no newline yet. It is not
	// consumed (offset stays at its start) unless the caller calls
	// consumePartial because the input is complete.
	partial bool
	n       int64 // bytes of the line read so far (for consumePartial)
}

func newLineReader(r io.Reader, max int, offset int64, line int) *lineReader {
	return &lineReader{r: bufio.NewReaderSize(r, max+1), max: max, offset: offset, line: line}
}

// next returns the next line. At the end of the input it returns io.EOF, with
// res.partial set when an unterminated line was read.
func (lr *lineReader) next() (readResult, error) {
	b, err := lr.r.ReadSlice('\n')
	if err == nil {
		lr.offset += int64(len(b))
		lr.line++
		return readResult{data: trimEOL(b), line: lr.line}, nil
	}
	if errors.Is(err, bufio.ErrBufferFull) {
		// Too long: discard through the newline, counting bytes.
		n := int64(len(b))
		for {
			b, err = lr.r.ReadSlice('\n')
			n += int64(len(b))
			if err == nil {
				lr.offset += n
				lr.line++
				return readResult{line: lr.line, tooLong: n}, nil
			}
			if !errors.Is(err, bufio.ErrBufferFull) {
				return readResult{line: lr.line + 1, tooLong: n, partial: true, n: n}, err
			}
		}
	}
	if len(b) == 0 {
		return readResult{}, err
	}
	return readResult{data: b, line: lr.line + 1, partial: true, n: int64(len(b))}, err
}

// consumePartial accepts the partial line just returned as the last line.
func (lr *lineReader) consumePartial(res readResult) {
	lr.offset += res.n
	lr.line++
}

func trimEOL(b []byte) []byte {
	b = b[:len(b)-1]
	if n := len(b); n > 0 && b[n-1] == '\r' {
		b = b[:n-1]
	}
	return b
}
