package trajectory

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/agentdataplatform/adp/internal/core"
)

// Encode is the content of a trajectory file: indented JSON without HTML
// escaping, in which the exchange with a model (each message and the tools
// as the client sent them, each model call's reply and logprobs as the
// server sent them) appears byte for byte. encoding/json cannot write a
// json.RawMessage as it is: it compacts it (and by default escapes '<',
// '>', '&' and U+2028/U+2029), and MarshalIndent re-indents it. So each raw
// value is encoded as a placeholder string naming it by a random nonce (no
// text of the trajectory can contain it) and then replaced by its bytes.
func Encode(tr *core.Trajectory) ([]byte, error) {
	var n [12]byte
	if _, err := rand.Read(n[:]); err != nil {
		return nil, fmt.Errorf("encode trajectory %s: %w", tr.TaskID, err)
	}
	prefix := `"adp-raw-` + hex.EncodeToString(n[:]) + "-"
	var raws []string // placeholder, value, placeholder, value…
	hold := func(what string, r json.RawMessage) (json.RawMessage, error) {
		if r == nil {
			return nil, nil
		}
		if !json.Valid(r) {
			return nil, fmt.Errorf("encode trajectory %s: %s is not valid JSON", tr.TaskID, what)
		}
		p := prefix + strconv.Itoa(len(raws)/2) + `"`
		raws = append(raws, p, string(r))
		return json.RawMessage(p), nil
	}
	c := *tr
	var err error
	if tr.Messages != nil {
		c.Messages = make([]json.RawMessage, len(tr.Messages))
		for i, m := range tr.Messages {
			if c.Messages[i], err = hold(fmt.Sprintf("message %d", i), m); err != nil {
				return nil, err
			}
		}
	}
	if c.Tools, err = hold("tools", tr.Tools); err != nil {
		return nil, err
	}
	if tr.ModelCalls != nil {
		c.ModelCalls = make([]core.ModelCall, len(tr.ModelCalls))
		for i, mc := range tr.ModelCalls {
			if mc.Reply, err = hold(fmt.Sprintf("model call %d's reply", i), mc.Reply); err != nil {
				return nil, err
			}
			if mc.Logprobs, err = hold(fmt.Sprintf("model call %d's logprobs", i), mc.Logprobs); err != nil {
				return nil, err
			}
			c.ModelCalls[i] = mc
		}
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(&c); err != nil {
		return nil, fmt.Errorf("encode trajectory %s: %w", tr.TaskID, err)
	}
	if len(raws) == 0 {
		return b.Bytes(), nil
	}
	// One pass: a value put in is never searched for placeholders.
	return []byte(strings.NewReplacer(raws...).Replace(b.String())), nil
}
