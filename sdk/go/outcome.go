package plugin

// Outcome is what a plugin decided for one event. Process returns exactly
// one per input event, in input order. Make one with [Keep], [Replace],
// [Drop], [Route], [RouteReplaced] or [Fail].
type Outcome struct {
	kind   verdictKind
	json   []byte
	sinks  []string
	reason string
}

// verdictKind is the discriminant of the contract's `verdict` variant, in
// the order the WIT lists its cases.
type verdictKind uint8

const (
	kindKeep verdictKind = iota
	kindReplace
	kindDrop
	kindRoute
	kindFail
)

// Keep passes the event on unchanged (to the next plugin, then its sinks).
func Keep() Outcome { return Outcome{kind: kindKeep} }

// Replace passes on json instead of the event. It must be one JSON object;
// anything else fails the event. Line breaks in it are fine.
func Replace(json []byte) Outcome { return Outcome{kind: kindReplace, json: json} }

// Drop drops the event on purpose. ferry counts drops per plugin; the event
// is not delivered and its position counts as done.
func Drop() Outcome { return Outcome{kind: kindDrop} }

// Route sends the event unchanged to the named sinks of ferry.toml
// (`default` is the sink used when no plugin routes). sinks must not be
// empty; an unknown name fails the event. Later plugins still see it.
func Route(sinks ...string) Outcome { return Outcome{kind: kindRoute, sinks: sinks} }

// RouteReplaced sends json instead of the event to the named sinks.
func RouteReplaced(json []byte, sinks ...string) Outcome {
	if json == nil {
		json = []byte{}
	}
	return Outcome{kind: kindRoute, json: json, sinks: sinks}
}

// Fail says this event cannot be handled: ferry writes it to the dead-letter
// table with reason and goes on with the rest of the batch.
func Fail(reason string) Outcome { return Outcome{kind: kindFail, reason: reason} }

// IsKeep, IsDrop, … say which outcome it is: for a plugin's own tests.
func (o Outcome) IsKeep() bool { return o.kind == kindKeep }

// IsDrop says whether the outcome drops the event.
func (o Outcome) IsDrop() bool { return o.kind == kindDrop }

// IsFail says whether the outcome fails the event.
func (o Outcome) IsFail() bool { return o.kind == kindFail }

// IsRoute says whether the outcome routes the event.
func (o Outcome) IsRoute() bool { return o.kind == kindRoute }

// JSON is the new JSON the outcome gives the event (Replace, RouteReplaced),
// or nil.
func (o Outcome) JSON() []byte {
	if o.kind == kindReplace || (o.kind == kindRoute && o.json != nil) {
		return o.json
	}
	return nil
}

// Sinks are the sinks a Route outcome names.
func (o Outcome) Sinks() []string { return o.sinks }

// Reason is why a Fail outcome failed the event.
func (o Outcome) Reason() string { return o.reason }
