// Package plugin is ferry's SDK for plugins written in Go.
//
// A plugin registers itself in an init function of its main package:
//
//	func init() {
//		plugin.Register(func(config []byte) (plugin.Plugin, error) {
//			var settings Settings
//			if err := plugin.DecodeConfig(config, &settings); err != nil {
//				return nil, err
//			}
//			return &MyPlugin{settings}, nil
//		})
//	}
//
//	func main() {} // never called: the module is a reactor
//
// and is built with the standard Go toolchain (1.24 or later) as a WASI
// preview-1 reactor, which `ferry plugin build` then makes a component:
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o core.wasm .
//
// ferry hands a plugin a batch of events at a time and takes back one
// [Outcome] per event, in order: [Keep], [Replace], [Drop], [Route] or
// [Fail]. [Log] and [Count] reach ferry's log and metrics.
//
// An [Event] is its JSON text. [Event.Fields] (and [Event.Field]) reads
// only the top-level fields a plugin names, in one pass that skips every
// other value by its brackets and quotes, without decoding it: raw values
// pointing into the event, nil when absent, the last one when a key
// repeats, an error saying at which byte the JSON is malformed (hand it on
// as the event's [Fail] reason). [Text] and [Items] read a raw string and
// a raw array. Decoding a whole event with encoding/json costs several
// times more; the header ([Event.Type], [Event.ID], …) is read with the
// same scanner.
//
// There is no generator of bindings for Go here, so this package carries the
// contract (wit/plugin.wit, `ferry:plugin@0.2.0`) by hand: abi.go lowers and
// lifts its two exports and two imports per the component model's canonical
// ABI. Everything else builds for the host too, so a plugin's logic can be
// tested with a plain `go test`.
package plugin
