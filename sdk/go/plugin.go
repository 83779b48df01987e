package plugin

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
)

// Plugin is a plugin's state between batches, made by the function given
// to [Register] from the plugin's config.
type Plugin interface {
	// Process decides what becomes of each event of a batch: exactly one
	// Outcome per event, in order. It must not keep the events' JSON past
	// the call (copy what it keeps).
	Process(batch []*Event) []Outcome
}

// New makes a plugin from its config: the plugin's `[config]` table of
// NAME.toml (or ferry.toml) as JSON text, `{}` when there is none. An error
// refuses the config: ferry then refuses to load the plugin and prints the
// error's text with the plugin's name, so make it one line that names the
// key.
type New func(config []byte) (Plugin, error)

var (
	newPlugin New
	current   Plugin
)

// Register names the function that makes the plugin; call it from an init
// function of the main package. ferry calls it again whenever it had to
// instantiate the plugin anew.
func Register(new New) { newPlugin = new }

// DecodeConfig reads the config's JSON into v (a pointer to a struct with
// `json` tags) and refuses keys v has no field for, so that a misspelt
// setting is an error rather than ignored. Its errors are one line.
func DecodeConfig(config []byte, v any) error {
	decoder := json.NewDecoder(bytes.NewReader(config))
	decoder.DisallowUnknownFields()
	if err := decoder.Decode(v); err != nil {
		return fmt.Errorf("config: %s", strings.ReplaceAll(strings.TrimPrefix(err.Error(), "json: "), "\n", " "))
	}
	return nil
}

// initialise is the contract's `init`: a fresh plugin from config, or the
// error's text.
func initialise(config []byte) (message string, ok bool) {
	current = nil
	if newPlugin == nil {
		return "the plugin registers no constructor: call plugin.Register in an init function of package main", false
	}
	p, err := newPlugin(config)
	if err != nil {
		return strings.ReplaceAll(err.Error(), "\n", " "), false
	}
	if p == nil {
		return "the plugin's constructor returned no plugin", false
	}
	current = p
	return "", true
}

// process is the contract's `process` before its output is lowered: one
// outcome per line of the batch. A plugin that answers with the wrong
// number of outcomes fails every event with the reason, as does a call
// before a successful init.
func process(lines []byte) []Outcome {
	batch := Split(lines)
	if current == nil {
		return failAll(len(batch), "the plugin was not initialised (its init refused the config)")
	}
	outcomes := current.Process(batch)
	if len(outcomes) != len(batch) {
		return failAll(len(batch), fmt.Sprintf("the plugin returned %d outcomes for %d events", len(outcomes), len(batch)))
	}
	return outcomes
}

func failAll(n int, reason string) []Outcome {
	outcomes := make([]Outcome, n)
	for i := range outcomes {
		outcomes[i] = Fail(reason)
	}
	return outcomes
}

// Level is how important a log record is.
type Level uint8

// The levels of ferry's log, in the contract's order.
const (
	Trace Level = iota
	Debug
	Info
	Warn
	Error
)

// Log writes a record through ferry's log, tagged with the plugin's name.
// keyValues are pairs of a key and its value (a last key without a value
// gets ""). Plugins must not log secrets; ferry writes what it is given.
func Log(level Level, message string, keyValues ...string) {
	if len(keyValues)%2 == 1 {
		keyValues = append(keyValues, "")
	}
	hostLog(level, message, keyValues)
}

// Count adds delta to the plugin's counter name, which ferry reports with
// its own metrics. Names should be few and fixed (`dropped`, not one per user).
func Count(name string, delta uint64) {
	hostCount(name, delta)
}
