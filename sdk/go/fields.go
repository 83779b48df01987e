package plugin

import (
	"encoding/json"
	"fmt"
	"strconv"
	"unicode/utf8"
)

// Fields is the raw JSON values of the event's top-level fields called
// names, in the order asked, each a slice of e.JSON (copy what you keep);
// nil for a name the event lacks. One pass over the text: values that are
// not asked for are skipped by their brackets and quotes, never decoded,
// which is what makes it cheaper than json.Unmarshal of the whole event.
//
// Keys match exactly (encoding/json would also match other cases); a key
// with escapes is compared as unescaped. A name given twice in the event
// yields its last value, as encoding/json does. Malformed JSON, or a text
// that is not one object, is an error saying what is wrong and at which
// byte: a plugin hands it on as the event's [Fail] reason.
func (e *Event) Fields(names ...string) ([]json.RawMessage, error) {
	values := make([]json.RawMessage, len(names))
	if err := objectFields(e.JSON, names, values); err != nil {
		return nil, err
	}
	return values, nil
}

// Field is the raw JSON value of one top-level field, nil when the event
// lacks it; see [Event.Fields], which reads several in the same pass.
func (e *Event) Field(name string) (json.RawMessage, error) {
	var value [1]json.RawMessage
	if err := objectFields(e.JSON, []string{name}, value[:]); err != nil {
		return nil, err
	}
	return value[0], nil
}

// Text is the string a raw JSON value holds, unescaped; false for a value
// that is not a string (absent, null, a number, …).
func Text(raw json.RawMessage) (string, bool) {
	if len(raw) < 2 || raw[0] != '"' {
		return "", false
	}
	inner := raw[1 : len(raw)-1]
	if plain(inner) {
		return string(inner), true
	}
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return "", false
	}
	return s, true
}

// Items is the raw elements of a JSON array value, in order, each a slice
// of raw; nil for a value that is not an array (or is malformed).
func Items(raw json.RawMessage) []json.RawMessage {
	s := scanner{text: raw}
	s.space()
	if !s.take('[') {
		return nil
	}
	var items []json.RawMessage
	s.space()
	if s.take(']') {
		return items
	}
	for {
		s.space()
		start := s.at
		if s.value() != nil {
			return nil
		}
		items = append(items, json.RawMessage(raw[start:s.at]))
		s.space()
		if s.take(']') {
			break
		}
		if !s.take(',') {
			return nil
		}
	}
	if s.space(); s.at != len(raw) {
		return nil
	}
	return items
}

// plain says a string's inner bytes read as themselves: no escapes, no
// control characters, valid UTF-8 (encoding/json would replace bad bytes).
func plain(inner []byte) bool {
	ascii := true
	for _, b := range inner {
		if b == '\\' || b < 0x20 {
			return false
		}
		if b >= utf8.RuneSelf {
			ascii = false
		}
	}
	return ascii || utf8.Valid(inner)
}

// objectFields scans text, which must be exactly one JSON object (spaces
// around it allowed), and stores the value of each key in names at the
// same index of values (last one wins).
func objectFields(text []byte, names []string, values []json.RawMessage) error {
	s := scanner{text: text}
	s.space()
	if !s.take('{') {
		return s.fail("not a JSON object")
	}
	s.space()
	if !s.take('}') {
		for {
			if err := s.member(names, values); err != nil {
				return err
			}
			s.space()
			if s.take('}') {
				break
			}
			if !s.take(',') {
				return s.fail("expected ',' or '}' after a value")
			}
			s.space()
		}
	}
	if s.space(); s.at != len(text) {
		return s.fail("text after the object")
	}
	return nil
}

// maxDepth is how deep objects and arrays may nest, as in encoding/json:
// deeper text is refused rather than run the plugin out of stack.
const maxDepth = 10000

// scanner walks a JSON text, validating what it skips.
type scanner struct {
	text  []byte
	at    int
	depth int
}

// member reads `"key": value` and keeps the value if the key is asked for.
func (s *scanner) member(names []string, values []json.RawMessage) error {
	if s.peek() != '"' {
		return s.fail("expected a key")
	}
	keyStart := s.at
	escaped, err := s.str()
	if err != nil {
		return err
	}
	key := s.text[keyStart+1 : s.at-1]
	s.space()
	if !s.take(':') {
		return s.fail("expected ':' after a key")
	}
	s.space()
	start := s.at
	if err := s.value(); err != nil {
		return err
	}
	index := -1
	if escaped {
		var unescaped string
		if json.Unmarshal(s.text[keyStart:keyStart+len(key)+2], &unescaped) == nil {
			index = find(names, unescaped)
		}
	} else {
		index = findBytes(names, key)
	}
	if index >= 0 {
		values[index] = json.RawMessage(s.text[start:s.at])
	}
	return nil
}

func find(names []string, key string) int {
	for i, name := range names {
		if name == key {
			return i
		}
	}
	return -1
}

func findBytes(names []string, key []byte) int {
	for i, name := range names {
		if name == string(key) {
			return i
		}
	}
	return -1
}

// value skips one JSON value of any kind.
func (s *scanner) value() error {
	switch c := s.peek(); {
	case c == '"':
		_, err := s.str()
		return err
	case c == '{':
		return s.container('}', true)
	case c == '[':
		return s.container(']', false)
	case c == 't':
		return s.literal("true")
	case c == 'f':
		return s.literal("false")
	case c == 'n':
		return s.literal("null")
	case c == '-' || (c >= '0' && c <= '9'):
		return s.number()
	case s.at >= len(s.text):
		return s.fail("unexpected end of the text")
	default:
		return s.fail(fmt.Sprintf("unexpected %q", c))
	}
}

// container skips an object (keyed) or an array, nested to any depth.
func (s *scanner) container(end byte, keyed bool) error {
	if s.depth++; s.depth > maxDepth {
		return s.fail("nested too deep")
	}
	s.at++
	s.space()
	if s.take(end) {
		s.depth--
		return nil
	}
	for {
		if keyed {
			if s.peek() != '"' {
				return s.fail("expected a key")
			}
			if _, err := s.str(); err != nil {
				return err
			}
			s.space()
			if !s.take(':') {
				return s.fail("expected ':' after a key")
			}
			s.space()
		}
		if err := s.value(); err != nil {
			return err
		}
		s.space()
		if s.take(end) {
			s.depth--
			return nil
		}
		if !s.take(',') {
			return s.fail(fmt.Sprintf("expected ',' or '%c'", end))
		}
		s.space()
	}
}

// str skips a string, the scanner at its opening quote, and says whether
// it held an escape.
func (s *scanner) str() (escaped bool, err error) {
	start := s.at
	s.at++
	for s.at < len(s.text) {
		c := s.text[s.at]
		switch {
		case c == '"':
			s.at++
			return escaped, nil
		case c == '\\':
			escaped = true
			if err := s.escape(); err != nil {
				return escaped, err
			}
		case c < 0x20:
			return escaped, s.fail("control character in a string")
		default:
			s.at++
		}
	}
	s.at = start
	return escaped, s.fail("unterminated string")
}

// escape skips one escape sequence, the scanner at its backslash.
func (s *scanner) escape() error {
	if s.at+1 >= len(s.text) {
		return s.fail("unterminated string")
	}
	switch s.text[s.at+1] {
	case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
		s.at += 2
		return nil
	case 'u':
		if s.at+6 > len(s.text) {
			return s.fail("short \\u escape")
		}
		for _, h := range s.text[s.at+2 : s.at+6] {
			if !isHex(h) {
				return s.fail("bad \\u escape")
			}
		}
		s.at += 6
		return nil
	default:
		return s.fail("bad escape")
	}
}

func isHex(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
}

// number skips a number in JSON's grammar: -?int frac? exp?.
func (s *scanner) number() error {
	s.take('-')
	switch {
	case s.take('0'):
	case s.digits() == 0:
		return s.fail("bad number")
	}
	if s.take('.') && s.digits() == 0 {
		return s.fail("bad number")
	}
	if s.take('e') || s.take('E') {
		if !s.take('+') {
			s.take('-')
		}
		if s.digits() == 0 {
			return s.fail("bad number")
		}
	}
	return nil
}

func (s *scanner) digits() int {
	start := s.at
	for s.at < len(s.text) && s.text[s.at] >= '0' && s.text[s.at] <= '9' {
		s.at++
	}
	return s.at - start
}

func (s *scanner) literal(word string) error {
	if len(s.text)-s.at < len(word) || string(s.text[s.at:s.at+len(word)]) != word {
		return s.fail("bad literal")
	}
	s.at += len(word)
	return nil
}

func (s *scanner) space() {
	for s.at < len(s.text) {
		switch s.text[s.at] {
		case ' ', '\t', '\n', '\r':
			s.at++
		default:
			return
		}
	}
}

func (s *scanner) peek() byte {
	if s.at < len(s.text) {
		return s.text[s.at]
	}
	return 0
}

func (s *scanner) take(c byte) bool {
	if s.at < len(s.text) && s.text[s.at] == c {
		s.at++
		return true
	}
	return false
}

// fail is a malformed-JSON error naming the byte offset it was found at.
func (s *scanner) fail(what string) error {
	if s.at >= len(s.text) && what != "unterminated string" {
		what += " (at the end of the text)"
	}
	return fmt.Errorf("malformed JSON at byte %d: %s", s.at, what)
}

// integer is a raw JSON number that holds a whole int64 (as encoding/json
// reads it, through float64: 7, 7.0, 7e0); false for anything else.
func integer(raw json.RawMessage) (int64, bool) {
	if len(raw) == 0 || (raw[0] != '-' && (raw[0] < '0' || raw[0] > '9')) {
		return 0, false
	}
	f, err := strconv.ParseFloat(string(raw), 64)
	if err != nil || f != float64(int64(f)) {
		return 0, false
	}
	return int64(f), true
}
