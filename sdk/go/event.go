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

// headerNames are the top-level fields the header is read from. `event`
// may be an object: the `ecs` plugin makes it one and keeps Teleport's
// fields under `teleport` (the time in `@timestamp`), as ferry's own
// reader knows.
var headerNames = []string{"event", "uid", "time", "ei", "sid", "teleport", "@timestamp"}

// teleportNames are the fields read from `teleport` of a mapped event.
var teleportNames = []string{"event", "uid", "ei", "sid"}

// read reads the header at the first call, in one pass of the same scanner
// as [Event.Fields]. JSON that cannot be read gives empty fields: the
// plugin finds out why when it reads the event itself.
func (e *Event) read() *header {
	if e.header != nil {
		return e.header
	}
	h := &header{}
	var wire [7]json.RawMessage
	if objectFields(e.JSON, headerNames, wire[:]) == nil {
		h.eventType, _ = Text(wire[0])
		h.id, _ = Text(wire[1])
		h.time, _ = Text(wire[2])
		h.index, _ = integer(wire[3])
		h.sessionID, _ = Text(wire[4])
		var mapped [4]json.RawMessage
		if h.eventType == "" && wire[5] != nil && objectFields(wire[5], teleportNames, mapped[:]) == nil {
			h.eventType, _ = Text(mapped[0])
			h.index, _ = integer(mapped[2])
			h.sessionID, _ = Text(mapped[3])
			if h.id == "" {
				h.id, _ = Text(mapped[1])
			}
			if h.time == "" {
				h.time, _ = Text(wire[6])
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
