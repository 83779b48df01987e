package plugin

import (
	"bytes"
	"encoding/json"
	"maps"
	"os"
	"slices"
	"strings"
	"testing"
)

// fields reads names from text and fails the test on an error.
func fields(t *testing.T, text string, names ...string) []string {
	t.Helper()
	values, err := NewEvent([]byte(text)).Fields(names...)
	if err != nil {
		t.Fatalf("%s: %v", text, err)
	}
	out := make([]string, len(values))
	for i, v := range values {
		if v == nil {
			out[i] = "<absent>"
		} else {
			out[i] = string(v)
		}
	}
	return out
}

func same(t *testing.T, text string, got, want []string) {
	t.Helper()
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("%s:\n got %q\nwant %q", text, got, want)
	}
}

func TestFieldsAreTheRawTopLevelValuesInTheOrderAsked(t *testing.T) {
	text := ` { "a" : 1 , "b":{"user":"x","c":[1,{"user":2}]}, "user" :"alice", "roles":["admin","dev"],"n":null,"f":-1.5e+3,"t":true} `
	same(t, text, fields(t, text, "roles", "user", "b", "n", "f", "t", "missing"),
		[]string{`["admin","dev"]`, `"alice"`, `{"user":"x","c":[1,{"user":2}]}`, "null", "-1.5e+3", "true", "<absent>"})
}

// Names inside nested objects and arrays, or inside strings, are not
// top-level fields.
func TestNamesNestedOrInsideStringsAreNotFields(t *testing.T) {
	text := `{"x":{"user":"nested"},"y":[{"user":"in array"}],"z":"\"user\":\"in a string\"","w":"{\"user\":1}"}`
	same(t, text, fields(t, text, "user"), []string{"<absent>"})
	text = `{"x":["}","]","{","[","\\"],"user":"top"}`
	same(t, text, fields(t, text, "user"), []string{`"top"`})
}

func TestEscapedKeysAreComparedUnescapedAndValuesKeepTheirEscapes(t *testing.T) {
	text := `{"us\u0065r":"a\"b\\c\u00e9","r\\oles":1,"te\/am":"t","\u0072oles":["x\n"]}`
	same(t, text, fields(t, text, "user", `r\oles`, "te/am", "roles", "us\\u0065r"),
		[]string{`"a\"b\\c\u00e9"`, "1", `"t"`, `["x\n"]`, "<absent>"})
	if s, ok := Text(json.RawMessage(`"a\"b\\c\u00e9"`)); !ok || s != "a\"b\\cé" {
		t.Errorf("text: %q %v", s, ok)
	}
	if s, ok := Text(json.RawMessage(`"plain é"`)); !ok || s != "plain é" {
		t.Errorf("plain text: %q %v", s, ok)
	}
	for _, raw := range []string{"", "null", "1", `["a"]`, `{}`} {
		if s, ok := Text(json.RawMessage(raw)); ok {
			t.Errorf("%s is not a string, got %q", raw, s)
		}
	}
}

// As encoding/json: the last of duplicate keys wins (an escaped spelling
// is the same key).
func TestTheLastOfDuplicateKeysWins(t *testing.T) {
	text := `{"user":"first","x":1,"user":"second","roles":[1],"rol\u0065s":["last"]}`
	same(t, text, fields(t, text, "user", "roles"), []string{`"second"`, `["last"]`})
	var decoded struct {
		User  string
		Roles []any
	}
	if err := json.Unmarshal([]byte(text), &decoded); err != nil || decoded.User != "second" || decoded.Roles[0] != "last" {
		t.Fatalf("encoding/json reads %+v %v", decoded, err)
	}
}

func TestFieldReadsOneNameAndEmptyObjectsHaveNone(t *testing.T) {
	e := NewEvent([]byte(`{"team":"x","user":{"name":"a"}}`))
	if v, err := e.Field("user"); err != nil || string(v) != `{"name":"a"}` {
		t.Fatalf("field: %s %v", v, err)
	}
	if v, err := e.Field("roles"); err != nil || v != nil {
		t.Fatalf("absent: %s %v", v, err)
	}
	same(t, "{}", fields(t, " {\n} ", "a"), []string{"<absent>"})
}

// Malformed JSON is an error saying what and at which byte, whatever part
// of the text it is in, asked for or not; so is a text that is not an object.
func TestMalformedJSONIsAnErrorSayingWhereItIs(t *testing.T) {
	for text, want := range map[string]string{
		``:                              "malformed JSON at byte 0: not a JSON object (at the end of the text)",
		`[1]`:                           "malformed JSON at byte 0: not a JSON object",
		`null`:                          "malformed JSON at byte 0: not a JSON object",
		`{"event":`:                     "malformed JSON at byte 9: unexpected end of the text (at the end of the text)",
		`{"a":1,}`:                      "malformed JSON at byte 7: expected a key",
		`{"a" 1}`:                       "malformed JSON at byte 5: expected ':' after a key",
		`{"a":1 "b":2}`:                 "malformed JSON at byte 7: expected ',' or '}' after a value",
		`{"a":1}}`:                      "malformed JSON at byte 7: text after the object",
		`{"a":"unterminated}`:           "malformed JSON at byte 5: unterminated string",
		`{"a":"bad \x"}`:                "malformed JSON at byte 10: bad escape",
		`{"a":"bad \u12g4"}`:            "malformed JSON at byte 10: bad \\u escape",
		"{\"a\":\"tab\tinside\"}":       "malformed JSON at byte 9: control character in a string",
		`{"x":{"deep":[1,2}],"user":1}`: "malformed JSON at byte 17: expected ',' or ']'",
		`{"x":[{"k" 1}]}`:               "malformed JSON at byte 11: expected ':' after a key",
		`{"a":tru}`:                     "malformed JSON at byte 5: bad literal",
		`{"a":01}`:                      "malformed JSON at byte 6: expected ',' or '}' after a value",
		`{"a":-}`:                       "malformed JSON at byte 6: bad number",
		`{"a":1.}`:                      "malformed JSON at byte 7: bad number",
		`{"a":1e}`:                      "malformed JSON at byte 7: bad number",
		`{"a":'x'}`:                     `malformed JSON at byte 5: unexpected '\''`,
	} {
		_, err := NewEvent([]byte(text)).Fields("user")
		if err == nil || err.Error() != want {
			t.Errorf("%s: got %v, want %s", text, err, want)
		}
		if json.Valid([]byte(text)) && !strings.Contains(want, "not a JSON object") {
			t.Errorf("%s: encoding/json reads it", text)
		}
	}
}

func TestItemsAreTheRawElementsOfAnArray(t *testing.T) {
	got := Items(json.RawMessage(` [ "a" , {"b":[1,"]"]}, null,"c\"" ] `))
	var out []string
	for _, item := range got {
		out = append(out, string(item))
	}
	same(t, "items", out, []string{`"a"`, `{"b":[1,"]"]}`, "null", `"c\""`})
	if items := Items(json.RawMessage(`[]`)); items != nil && len(items) != 0 {
		t.Errorf("empty array: %q", items)
	}
	for _, raw := range []string{"", `"a"`, `{}`, `[1,]`, `[1 2]`, `[1]x`, "null"} {
		if items := Items(json.RawMessage(raw)); items != nil {
			t.Errorf("%s: got %q", raw, items)
		}
	}
}

// The header reads the same with the scanner as it did with encoding/json:
// whole-integer forms of `ei`, the last of duplicates, escapes.
func TestHeaderFieldsFollowEncodingJSON(t *testing.T) {
	e := NewEvent([]byte(`{"event":"a","ei":7.0,"uid":"u-\u0031","event":"user.login","time":1,"sid":null}`))
	if e.Type() != "user.login" || e.Index() != 7 || e.ID() != "u-1" || e.Time() != "" || e.SessionID() != "" {
		t.Fatalf("header: %q %d %q %q %q", e.Type(), e.Index(), e.ID(), e.Time(), e.SessionID())
	}
	if e := NewEvent([]byte(`{"ei":1.5,"event":{"action":"x"},"teleport":null}`)); e.Index() != 0 || e.Type() != "" {
		t.Fatalf("fractional index or no type: %d %q", e.Index(), e.Type())
	}
	if e := NewEvent([]byte(`{"ei":1e2,"uid":"u","x":[}`)); e.Index() != 0 || e.ID() == "u" {
		t.Fatalf("malformed: %d %q", e.Index(), e.ID())
	}
}

// Every fixture event: each top-level field reads as encoding/json reads
// it, and every cut short version of it is an error.
func TestFieldsAgreeWithEncodingJSONOnTheFixtures(t *testing.T) {
	text, err := os.ReadFile("../../fixtures/teleport-events.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	for n, line := range bytes.Split(bytes.TrimSpace(text), []byte{'\n'}) {
		var want map[string]json.RawMessage
		if err := json.Unmarshal(line, &want); err != nil {
			t.Fatalf("line %d: %v", n+1, err)
		}
		names := slices.Collect(maps.Keys(want))
		got, err := NewEvent(line).Fields(names...)
		if err != nil {
			t.Fatalf("line %d: %v", n+1, err)
		}
		for i, name := range names {
			if !bytes.Equal(got[i], want[name]) {
				t.Fatalf("line %d, %s: got %s, want %s", n+1, name, got[i], want[name])
			}
		}
		for cut := 0; cut < len(line); cut += 7 {
			if _, err := NewEvent(line[:cut]).Fields("event"); err == nil {
				t.Fatalf("line %d cut at %d reads", n+1, cut)
			}
		}
	}
}

func TestNestingDeeperThanEncodingJSONAllowsIsRefused(t *testing.T) {
	deep := func(n int) []byte {
		return []byte(`{"x":` + strings.Repeat("[", n) + strings.Repeat("]", n) + `,"user":1}`)
	}
	if v, err := NewEvent(deep(maxDepth - 1)).Field("user"); err != nil || string(v) != "1" {
		t.Fatalf("within the limit: %s %v", v, err)
	}
	if _, err := NewEvent(deep(maxDepth + 1)).Field("user"); err == nil || !strings.HasSuffix(err.Error(), "nested too deep") {
		t.Fatalf("past the limit: %v", err)
	}
}
