// every: a plugin that gives every kind of outcome, for ferry's tests of
// its Go SDK: sftp events are routed to two sinks, device events routed
// with new JSON, port events failed, session.end dropped, user.login kept
// with a log record, every other event replaced with a note.
package main

import (
	"bytes"

	"ferry.dev/plugin"
)

type every struct{ batches int }

func (e *every) Process(batch []*plugin.Event) []plugin.Outcome {
	e.batches++
	outcomes := make([]plugin.Outcome, len(batch))
	for i, event := range batch {
		switch event.Type() {
		case "sftp":
			outcomes[i] = plugin.Route("security", "default")
		case "device":
			outcomes[i] = plugin.RouteReplaced([]byte(`{"event":"device","uid":"`+event.ID()+`","moved":true}`), "security")
		case "port":
			outcomes[i] = plugin.Fail("no port events: " + event.ID())
		case "session.end":
			outcomes[i] = plugin.Drop()
		case "user.login":
			plugin.Log(plugin.Info, "a login", "user_event", event.ID(), "odd")
			outcomes[i] = plugin.Keep()
		default:
			json := bytes.TrimSuffix(event.JSON, []byte("}"))
			outcomes[i] = plugin.Replace(append(append([]byte{}, json...), ",\n\"note\":\"é\"}"...))
		}
	}
	plugin.Count("batches", 1)
	return outcomes
}

func init() {
	plugin.Register(func([]byte) (plugin.Plugin, error) { return &every{}, nil })
}

func main() {}
