package plugin

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
)

// Event is one audit event of a batch.
//
// JSON is the event's text: one JSON object, UTF-8, on one line. It points
// into the batch ferry handed over: a plugin that keeps it past Process must
// copy it. Teleport's header fields (`event`, `uid`, `time`, `ei`, `sid`)
// are read once, the first time one of them is asked for; a plugin that
// never asks never pays for it.
type Event struct {
	JSON   []byte
	header *header
}

// header holds the fields ferry names an event by.
type header struct {
	eventType, id, time, sessionID string
	index                          int64
}

// NewEvent is the event for one JSON text: for tests, and for a plugin
// that makes events of its own to hand to a helper.
func NewEvent(json []byte) *Event {
	return &Event{JSON: json}
}

// Type is the event type, Teleport's `event` field (`user.login`,
// `session.start`, …), also after the `ecs` plugin moved it to
// `teleport.event`; empty when the event has none.
func (e *Event) Type() string { return e.read().eventType }

// ID is ferry's id for the event, the one its logs and dead letters name:
// Teleport's `uid`, or for an event without one the hex SHA-256 of its
// JSON text (as Teleport identifies such events). Never empty.
func (e *Event) ID() string { return e.read().id }

// Time is the event time, Teleport's `time` field, as sent (RFC 3339);
// empty when the event has none.
func (e *Event) Time() string { return e.read().time }

// Index is the event index, Teleport's `ei` field; 0 when the event has none.
func (e *Event) Index() int64 { return e.read().index }

// SessionID is the session the event belongs to, Teleport's `sid` field;
// empty for events outside a session.
func (e *Event) SessionID() string { return e.read().sessionID }

// wireHeader is what encoding/json reads the header from: every other field
// is skipped. `event` is raw because the `ecs` plugin makes it an object
// (and keeps Teleport's fields under `teleport`, the id in `event.id` and
// the time in `@timestamp`), as ferry's own reader knows.
type wireHeader struct {
	Event     json.RawMessage `json:"event"`
	UID       any             `json:"uid"`
	Time      any             `json:"time"`
	Timestamp any             `json:"@timestamp"`
	EI        any             `json:"ei"`
	SID       any             `json:"sid"`
	Teleport  *struct {
		Event any `json:"event"`
		UID   any `json:"uid"`
		EI    any `json:"ei"`
		SID   any `json:"sid"`
	} `json:"teleport"`
}

// read reads the header at the first call. JSON that cannot be read gives
// empty fields: the plugin finds out why when it parses the event itself.
func (e *Event) read() *header {
	if e.header != nil {
		return e.header
	}
	h := &header{}
	var wire wireHeader
	if json.Unmarshal(e.JSON, &wire) == nil {
		var eventType string
		if json.Unmarshal(wire.Event, &eventType) == nil {
			h.eventType = eventType
		}
		h.id, h.time, h.sessionID, h.index = text(wire.UID), text(wire.Time), text(wire.SID), number(wire.EI)
		if t := wire.Teleport; t != nil && h.eventType == "" {
			h.eventType, h.sessionID, h.index = text(t.Event), text(t.SID), number(t.EI)
			if h.id == "" {
				h.id = text(t.UID)
			}
			if h.time == "" {
				h.time = text(wire.Timestamp)
			}
		}
	}
	if h.id == "" {
		sum := sha256.Sum256(e.JSON)
		h.id = hex.EncodeToString(sum[:])
	}
	e.header = h
	return h
}

// text is a header field that should be a string; anything else reads as absent.
func text(value any) string {
	s, _ := value.(string)
	return s
}

// number is a header field that should be an integer; anything else reads as 0.
func number(value any) int64 {
	f, ok := value.(float64)
	if !ok || f != float64(int64(f)) {
		return 0
	}
	return int64(f)
}

// Split is the events of a JSON Lines buffer, as ferry hands a batch over:
// one event per line, the last line break optional. The events' JSON points
// into lines.
func Split(lines []byte) []*Event {
	events := make([]*Event, 0, bytes.Count(lines, []byte{'\n'})+1)
	for len(lines) > 0 {
		line, rest, _ := bytes.Cut(lines, []byte{'\n'})
		events = append(events, NewEvent(line))
		lines = rest
	}
	return events
}
