package chaos

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
)

// lineKind says what a generated line is.
type lineKind struct{ kind string }

func (k lineKind) invalid() bool { return k.kind != "valid" && k.kind != "repeat" }

// badInput generates TestBadInput's file.
type badInput struct {
	rng   *rand.Rand
	token string

	valid   []string // ids of the valid tasks, in order
	invalid int
	repeats int
}

func newBadInput(rng *rand.Rand, token string) *badInput {
	return &badInput{rng: rng, token: token}
}

// Counts of each kind of invalid line; with the one deeply nested line under
// an unknown constraint they add up to 10,001.
const (
	nRandomBytes = 4000
	nTruncated   = 3000
	nMalformed   = 2000
	nBadIDs      = 900
	nDeep        = 50
	nHugeLine    = 25
	nHugeDesc    = 25
	nValid       = 300
	nRepeats     = 100
)

// oddValidIDs are unusual but safe ids: each is a valid file name.
var oddValidIDs = []string{
	"with space", "ünïcødé-✓", "semi;colon", "$HOME", "star*", "quote'", `dq"uote`,
	"-rf", "x.json", "%2e%2e%2f", "a:b", strings.Repeat("z", 200),
}

func (g *badInput) build() ([]string, []lineKind) {
	type item struct {
		line string
		kind string
	}
	var bad []item
	for range nRandomBytes {
		bad = append(bad, item{g.randomBytes(), "random-bytes"})
	}
	for range nTruncated {
		l := g.task(fmt.Sprintf("trunc-%d", g.rng.Int()), `print(1)`)
		bad = append(bad, item{l[:1+g.rng.IntN(len(l)-1)], "truncated"})
	}
	for i := range nMalformed {
		bad = append(bad, item{malformed[i%len(malformed)], "malformed"})
	}
	for i := range nBadIDs {
		id := fmt.Sprintf(badIDs[i%len(badIDs)], g.token+fmt.Sprint(i))
		bad = append(bad, item{g.task(id, `print(1)`), "bad-id"})
	}
	for i := range nDeep {
		depth := 10_001 + g.rng.IntN(20_000) // past encoding/json's limit of 10,000
		var l string
		if i%2 == 0 {
			l = `{"task_id":"deep","task_type":"code","description":"d","constraints":{"x":` +
				strings.Repeat(`{"a":`, depth) + "1" + strings.Repeat("}", depth) + "}}"
		} else {
			l = strings.Repeat("[", depth) + strings.Repeat("]", depth)
		}
		bad = append(bad, item{l, "deep"})
	}
	for range nHugeLine {
		bad = append(bad, item{g.taskDesc("huge-line", strings.Repeat("x", 1<<20+g.rng.IntN(1<<16))), "huge-line"})
	}
	for range nHugeDesc {
		bad = append(bad, item{g.taskDesc("huge-desc", strings.Repeat("y", 64<<10+1+g.rng.IntN(1<<16))), "huge-desc"})
	}
	// Nesting within encoding/json's limit, under a constraint no task type
	// knows: rejected for the key (a misspelled verifier is never run
	// unverified), not for the depth.
	bad = append(bad, item{`{"task_id":"deep-unknown","task_type":"code","description":"d","constraints":{"code":"print('deep-unknown')","x":` +
		strings.Repeat(`{"a":`, 5000) + "1" + strings.Repeat("}", 5000) + "}}", "unknown-constraint"})
	g.invalid = len(bad)
	g.rng.Shuffle(len(bad), func(i, j int) { bad[i], bad[j] = bad[j], bad[i] })

	// Valid tasks (the odd ids first among them) and repeats go between the
	// invalid lines, a repeat always after its original.
	var good []item
	var ids []string
	for i := range nValid + len(oddValidIDs) {
		id := fmt.Sprintf("bad-valid-%05d", i)
		if i < len(oddValidIDs) {
			id = oddValidIDs[i]
		}
		ids = append(ids, id)
		good = append(good, item{g.task(id, fmt.Sprintf("print(%q)", id)), "valid"})
	}
	g.valid = ids

	var lines []string
	var kinds []lineKind
	emitted := 0
	step := len(bad) / len(good)
	for i, b := range bad {
		lines = append(lines, b.line)
		kinds = append(kinds, lineKind{b.kind})
		if i%step == step-1 && emitted < len(good) {
			lines = append(lines, good[emitted].line)
			kinds = append(kinds, lineKind{"valid"})
			emitted++
			if emitted > 10 && g.repeats < nRepeats {
				prev := ids[g.rng.IntN(emitted)]
				lines = append(lines, g.task(prev, `print("DUPLICATE")`))
				kinds = append(kinds, lineKind{"repeat"})
				g.repeats++
			}
		}
	}
	for ; emitted < len(good); emitted++ {
		lines = append(lines, good[emitted].line)
		kinds = append(kinds, lineKind{"valid"})
	}
	return lines, kinds
}

func (g *badInput) task(id, code string) string {
	b, _ := json.Marshal(map[string]any{
		"task_id": id, "task_type": "code", "description": "bad input " + id,
		"constraints": map[string]any{"code": code},
	})
	return string(b)
}

func (g *badInput) taskDesc(id, desc string) string {
	b, _ := json.Marshal(map[string]any{"task_id": id, "task_type": "code", "description": desc})
	return string(b)
}

// randomBytes is a line of random bytes: no newline, not blank.
func (g *badInput) randomBytes() string {
	n := 1 + g.rng.IntN(300)
	b := make([]byte, n+1)
	b[0] = "{[\"x!#0"[g.rng.IntN(7)]
	for i := 1; i <= n; i++ {
		c := byte(g.rng.IntN(256))
		if c == '\n' {
			c = 'n'
		}
		b[i] = c
	}
	return string(b)
}

// badIDs are unsafe task ids (%s: a unique token); each must be rejected.
var badIDs = []string{
	"../escape-%s", "../../escape-%s", "a/b-%s", "/abs-%s", ".hidden-%s", `back\slash-%s`,
	"a..b-%s", "nul\u0000-%s", "bell\u0007-%s", "ls\u2028-%s", "del\u007f-%s",
	strings.Repeat("w", 200) + "%s", // too long
}

// malformed are lines that are JSON (or nearly) but not a valid task.
var malformed = []string{
	`{"task_id":"m1","task_type":"code","description":"d","timeout":"10"}`,
	`{"task_id":"m2","task_type":"code","description":"d","max_step":5}`,
	`{"task_id":"m3","description":"d"}`,
	`{"task_id":"m4","task_type":"video","description":"d"}`,
	`{"task_id":"m5","task_type":"code"}`,
	`{"task_id":"m6","task_type":"code","description":"   "}`,
	`{"task_id":"m7","task_type":"code","description":"d","timeout":0}`,
	`{"task_id":"m8","task_type":"code","description":"d","timeout":-5}`,
	`{"task_id":"m9","task_type":"code","description":"d","timeout":999999}`,
	`{"task_id":"m10","task_type":"code","description":"d","max_steps":0}`,
	`{"task_id":"m11","task_type":"code","description":"d","priority":1000}`,
	`{"task_id":"m12","task_type":"code","description":"d","constraints":[1,2]}`,
	`{"task_id":"m13","task_type":"code","description":"d","expected_tools":[""]}`,
	`{"task_id":"m14","task_type":"code","description":"d","expected_tools":"python"}`,
	`{"task_id":13,"task_type":"code","description":"d"}`,
	`{"task_id":"m16","task_type":"code","description":"d"} {"task_id":"m16b"}`,
	`[]`, `"a string"`, `42`, `null`, `true`, `{}`,
	"\xef\xbb\xbf{\"task_id\":\"bom\",\"task_type\":\"code\",\"description\":\"d\"}",
	"{\"task_id\":\"m24\",\"task_type\":\"code\",\"description\":\"\xff\xfe\"}",
	`{"task_id":"m25","task_type":"code","description":"d",}`,
	`{'task_id':'m26','task_type':'code','description':'d'}`,
	`{"task_id":"m27","task_type":"code","description":"d","timeout":1e400}`,
	`{"task_id":"m28","task_type":"code","description":"d","timeout":1.5}`,
	`{"task_id":"m29","task_type":"code","description":"d","task_id":"m29"`,
}
