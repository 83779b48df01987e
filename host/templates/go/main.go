// {{name}}: a ferry plugin in Go.
//
// Drops the event types listed in its config and marks every other event
// with "processed_by":"{{name}}" as its last field. Change Process to do
// your own work.
//
// Config (the plugin's `[config]` table in {{name}}.toml or ferry.toml,
// handed to the function given to plugin.Register as JSON):
// drop = ["session.data", "user.login"].
//
// A batch arrives as events (plugin.Event: its JSON text, one object on one
// line, and Teleport's header fields read on demand: Type, ID, Time, Index,
// SessionID). Process returns one outcome per event, in order: plugin.Keep,
// Replace, Drop, Route, RouteReplaced or Fail. plugin.Log and plugin.Count
// reach ferry's log and metrics. The SDK is in ferry-plugin/ (module
// ferry.dev/plugin).
package main

import (
	"bytes"
	"errors"

	"ferry.dev/plugin"
)

// Settings is the plugin's config.
type Settings struct {
	// Drop lists the event types to drop.
	Drop []string `json:"drop"`
}

// Plugin is the plugin's state between batches.
type Plugin struct {
	drop map[string]bool
}

// mark is the field every kept event gets, written before its closing `}`.
const mark = `"processed_by":"{{name}}"`

// New makes the plugin from its config; an error refuses the config.
func New(config []byte) (plugin.Plugin, error) {
	var settings Settings
	if err := plugin.DecodeConfig(config, &settings); err != nil {
		return nil, errors.New("`drop` must be a list of event types (" + err.Error() + ")")
	}
	p := &Plugin{drop: map[string]bool{}}
	for _, eventType := range settings.Drop {
		p.drop[eventType] = true
	}
	return p, nil
}

// Process drops the configured types and marks every other event.
func (p *Plugin) Process(batch []*plugin.Event) []plugin.Outcome {
	outcomes := make([]plugin.Outcome, len(batch))
	dropped := uint64(0)
	for i, event := range batch {
		if p.drop[event.Type()] {
			outcomes[i] = plugin.Drop()
			dropped++
			continue
		}
		json := bytes.TrimRight(event.JSON, " \r")
		if len(json) < 2 || json[0] != '{' || json[len(json)-1] != '}' {
			outcomes[i] = plugin.Fail("not a JSON object on one line")
			continue
		}
		marked := append([]byte{}, json[:len(json)-1]...)
		if len(bytes.TrimSpace(json[1:len(json)-1])) > 0 {
			marked = append(marked, ',')
		}
		outcomes[i] = plugin.Replace(append(append(marked, mark...), '}'))
	}
	if dropped > 0 {
		plugin.Count("dropped", dropped)
	}
	return outcomes
}

func init() { plugin.Register(New) }

// main never runs: ferry calls the plugin through the SDK's exports.
func main() {}
