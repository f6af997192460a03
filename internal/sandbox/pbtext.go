package sandbox

import (
	"fmt"
	"strconv"
	"strings"
)

// A minimal reader of the protobuf text format, enough to check the nsjail
// policy (configs/nsjail/python.cfg) without nsjail's generated code:
// scalar fields (`name: value`), repeated fields, nested messages
// (`name { ... }`, `name: { ... }`, `name < ... >`), quoted strings with C
// escapes, and # comments. It does not know the schema: values are kept as
// text.

// pbMessage is a parsed message: its fields in file order.
type pbMessage struct {
	Fields []pbField
}

// pbField is one `name: value` or `name { ... }`.
type pbField struct {
	Name  string
	Value string     // the scalar, unquoted; empty for a message
	Msg   *pbMessage // non-nil for a message
	Line  int
}

// All returns every field called name.
func (m *pbMessage) All(name string) []pbField {
	var out []pbField
	for _, f := range m.Fields {
		if f.Name == name {
			out = append(out, f)
		}
	}
	return out
}

// Scalar returns the last value of a scalar field (the text format's rule
// for a repeated non-repeated field) and whether it was set.
func (m *pbMessage) Scalar(name string) (string, bool) {
	v, ok := "", false
	for _, f := range m.Fields {
		if f.Name == name && f.Msg == nil {
			v, ok = f.Value, true
		}
	}
	return v, ok
}

// Messages returns the nested messages called name.
func (m *pbMessage) Messages(name string) []*pbMessage {
	var out []*pbMessage
	for _, f := range m.Fields {
		if f.Name == name && f.Msg != nil {
			out = append(out, f.Msg)
		}
	}
	return out
}

type pbParser struct {
	src  string
	pos  int
	line int
}

// parsePBText parses a protobuf text-format document.
func parsePBText(src string) (*pbMessage, error) {
	p := &pbParser{src: src, line: 1}
	m, err := p.message("")
	if err != nil {
		return nil, err
	}
	return m, nil
}

func (p *pbParser) errorf(format string, args ...any) error {
	return fmt.Errorf("line %d: %s", p.line, fmt.Sprintf(format, args...))
}

// skip passes whitespace, comments and the optional separators , and ;.
func (p *pbParser) skip() {
	for p.pos < len(p.src) {
		c := p.src[p.pos]
		switch {
		case c == '\n':
			p.line++
			p.pos++
		case c == ' ' || c == '\t' || c == '\r' || c == ',' || c == ';':
			p.pos++
		case c == '#':
			for p.pos < len(p.src) && p.src[p.pos] != '\n' {
				p.pos++
			}
		default:
			return
		}
	}
}

// message parses fields until the closing delimiter (empty: end of input).
func (p *pbParser) message(end string) (*pbMessage, error) {
	m := &pbMessage{}
	for {
		p.skip()
		if p.pos >= len(p.src) {
			if end != "" {
				return nil, p.errorf("missing %q", end)
			}
			return m, nil
		}
		if end != "" && strings.HasPrefix(p.src[p.pos:], end) {
			p.pos++
			return m, nil
		}
		line := p.line
		name := p.ident()
		if name == "" {
			return nil, p.errorf("expected a field name, found %q", p.src[p.pos:p.pos+1])
		}
		p.skip()
		colon := p.pos < len(p.src) && p.src[p.pos] == ':'
		if colon {
			p.pos++
			p.skip()
		}
		if p.pos < len(p.src) && (p.src[p.pos] == '{' || p.src[p.pos] == '<') {
			close := "}"
			if p.src[p.pos] == '<' {
				close = ">"
			}
			p.pos++
			sub, err := p.message(close)
			if err != nil {
				return nil, err
			}
			m.Fields = append(m.Fields, pbField{Name: name, Msg: sub, Line: line})
			continue
		}
		if !colon {
			return nil, p.errorf("field %s: expected ':' or '{'", name)
		}
		v, err := p.scalar()
		if err != nil {
			return nil, fmt.Errorf("field %s: %w", name, err)
		}
		m.Fields = append(m.Fields, pbField{Name: name, Value: v, Line: line})
	}
}

func (p *pbParser) ident() string {
	start := p.pos
	for p.pos < len(p.src) {
		c := p.src[p.pos]
		if c == '_' || c == '.' || c == '-' || c == '+' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' {
			p.pos++
			continue
		}
		break
	}
	return p.src[start:p.pos]
}

// scalar reads a number, an identifier (enum value, true/false) or one or
// more adjacent quoted strings (concatenated, as protobuf does).
func (p *pbParser) scalar() (string, error) {
	if p.pos >= len(p.src) {
		return "", p.errorf("missing value")
	}
	if c := p.src[p.pos]; c != '"' && c != '\'' {
		v := p.ident()
		if v == "" {
			return "", p.errorf("bad value %q", p.src[p.pos:p.pos+1])
		}
		return v, nil
	}
	var b strings.Builder
	for p.pos < len(p.src) && (p.src[p.pos] == '"' || p.src[p.pos] == '\'') {
		s, err := p.quoted()
		if err != nil {
			return "", err
		}
		b.WriteString(s)
		// Adjacent strings concatenate, even across lines.
		save, saveLine := p.pos, p.line
		p.skipSpaceOnly()
		if p.pos >= len(p.src) || (p.src[p.pos] != '"' && p.src[p.pos] != '\'') {
			p.pos, p.line = save, saveLine
			break
		}
	}
	return b.String(), nil
}

func (p *pbParser) skipSpaceOnly() {
	for p.pos < len(p.src) {
		switch p.src[p.pos] {
		case '\n':
			p.line++
			p.pos++
		case ' ', '\t', '\r':
			p.pos++
		default:
			return
		}
	}
}

// quoted reads one quoted string; strconv handles the C escapes for the
// double-quoted form.
func (p *pbParser) quoted() (string, error) {
	q := p.src[p.pos]
	end := p.pos + 1
	for end < len(p.src) && p.src[end] != q {
		if p.src[end] == '\\' {
			end++
		}
		if end < len(p.src) && p.src[end] == '\n' {
			return "", p.errorf("newline in string")
		}
		end++
	}
	if end >= len(p.src) {
		return "", p.errorf("unterminated string")
	}
	raw := p.src[p.pos+1 : end]
	p.pos = end + 1
	if q == '\'' {
		raw = strings.ReplaceAll(strings.ReplaceAll(raw, `\'`, `'`), `"`, `\"`)
	}
	s, err := strconv.Unquote(`"` + raw + `"`)
	if err != nil {
		return "", p.errorf("bad string %q: %v", raw, err)
	}
	return s, nil
}

// pbQuote returns s as a double-quoted protobuf text string that nsjail's
// parser (and parsePBText) reads back byte for byte: printable ASCII as is,
// `"` and `\` escaped, every other byte (newlines, UTF-8 sequences, invalid
// bytes alike) as a three-digit octal escape.
func pbQuote(s string) string {
	var b strings.Builder
	b.Grow(len(s) + len(s)/8 + 2)
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c >= 0x20 && c < 0x7f:
			b.WriteByte(c)
		default:
			b.WriteByte('\\')
			b.WriteByte('0' + c>>6)
			b.WriteByte('0' + c>>3&7)
			b.WriteByte('0' + c&7)
		}
	}
	b.WriteByte('"')
	return b.String()
}
