package plugin

import "testing"

type marker struct{ seen int }

func (m *marker) Process(batch []*Event) []Outcome {
	outcomes := make([]Outcome, len(batch))
	for i, e := range batch {
		m.seen++
		switch e.Type() {
		case "sftp":
			outcomes[i] = Drop()
		case "bad":
			outcomes[i] = Fail("bad event " + e.ID())
		default:
			outcomes[i] = Keep()
		}
	}
	return outcomes
}

func TestHeaderFieldsAreReadFromTheJSON(t *testing.T) {
	e := NewEvent([]byte(`{"ei":7,"event":"session.start","uid":"u-1","time":"2024-01-01T00:00:00Z","sid":"s-1","x":[1,{"y":2}]}`))
	if e.Type() != "session.start" || e.ID() != "u-1" || e.Time() != "2024-01-01T00:00:00Z" || e.Index() != 7 || e.SessionID() != "s-1" {
		t.Fatalf("header: %q %q %q %d %q", e.Type(), e.ID(), e.Time(), e.Index(), e.SessionID())
	}
}

func TestOddOrMissingHeaderFieldsReadAsEmpty(t *testing.T) {
	e := NewEvent([]byte(`{"ei":"seven","event":"user.login"}`))
	if e.Type() != "user.login" || e.Index() != 0 || e.SessionID() != "" || len(e.ID()) != 64 {
		t.Fatalf("header: %q %d %q %q", e.Type(), e.Index(), e.SessionID(), e.ID())
	}
	broken := NewEvent([]byte(`{"event":`))
	if broken.Type() != "" || len(broken.ID()) != 64 {
		t.Fatalf("broken: %q %q", broken.Type(), broken.ID())
	}
}

func TestAnEventTheECSPluginMappedKeepsItsTypeAndID(t *testing.T) {
	e := NewEvent([]byte(`{"@timestamp":"2024-01-01T00:00:00Z","event":{"id":"u-1","action":"session.start"},"teleport":{"event":"session.start","uid":"u-1","ei":7,"sid":"s-1"}}`))
	if e.Type() != "session.start" || e.ID() != "u-1" || e.Time() != "2024-01-01T00:00:00Z" || e.Index() != 7 || e.SessionID() != "s-1" {
		t.Fatalf("header: %q %q %q %d %q", e.Type(), e.ID(), e.Time(), e.Index(), e.SessionID())
	}
}

func TestSplitTakesEveryLineWithOrWithoutTheLastBreak(t *testing.T) {
	for _, lines := range []string{"{\"a\":1}\n{}\n", "{\"a\":1}\n{}"} {
		events := Split([]byte(lines))
		if len(events) != 2 || string(events[0].JSON) != `{"a":1}` || string(events[1].JSON) != "{}" {
			t.Fatalf("%q: %d events", lines, len(events))
		}
	}
	if len(Split(nil)) != 0 {
		t.Fatal("an empty batch has no events")
	}
}

func TestProcessBeforeInitFailsEachEventAndStateLastsBetweenCalls(t *testing.T) {
	Register(nil)
	if _, ok := initialise([]byte("{}")); ok {
		t.Fatal("init without a constructor")
	}
	if out := process([]byte("{}\n{}\n")); len(out) != 2 || !out[0].IsFail() {
		t.Fatalf("before init: %v", out)
	}
	m := &marker{}
	Register(func(config []byte) (Plugin, error) {
		var settings struct{ Drop []string }
		return m, DecodeConfig(config, &settings)
	})
	if message, ok := initialise([]byte(`{"typo":1}`)); ok || message != `config: unknown field "typo"` {
		t.Fatalf("refused config: %q %v", message, ok)
	}
	if _, ok := initialise([]byte(`{"drop":[]}`)); !ok {
		t.Fatal("init")
	}
	out := process([]byte("{\"event\":\"sftp\"}\n{\"event\":\"bad\",\"uid\":\"u-9\"}\n{}"))
	if !out[0].IsDrop() || out[1].Reason() != "bad event u-9" || !out[2].IsKeep() {
		t.Fatalf("outcomes: %v", out)
	}
	process([]byte("{}"))
	if m.seen != 4 {
		t.Fatalf("state: %d events seen", m.seen)
	}
}
