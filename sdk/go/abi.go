//go:build wasip1

package plugin

// The contract's functions, lowered and lifted by hand per the component
// model's canonical ABI (design/mvp/CanonicalABI.md). A function's flat
// parameters are passed as core values when there are at most 16 of them,
// and its results when there is at most 1; a larger result is written to
// memory, and the core function returns a pointer to it. The layouts used
// here (little-endian, offsets in bytes):
//
//	string, list<T>          ptr u32 @0, len u32 @4                      size 8, align 4
//	result<_, string>        tag u8 @0 (0 ok, 1 err), string @4         size 12, align 4
//	route {sinks u32, replaced bool}  sinks @0, replaced u8 @4          size 8, align 4
//	verdict (5 cases: u8 tag) tag @0: keep 0, replace 1, drop 2, route 3, fail 4;
//	                         payload @4 (route, or the fail string)    size 12, align 4
//	output {verdicts, lines, routes}  three lists @0, @8, @16           size 24, align 4
//	list<list<string>>       elements are lists: (ptr, len) each        size 8
//	tuple<string, string>    two strings @0, @8                         size 16, align 4
//
// Go's heap is not moved by its garbage collector, so a pointer into it
// stays valid for ferry as long as Go holds a reference: every buffer handed
// to ferry (and every buffer ferry asked cabi_realloc for) is kept in
// `retained` until the next call.

import (
	"encoding/binary"
	"unsafe"
)

var (
	// retained keeps alive what ferry reads after a call returns, and the
	// buffers it wrote a call's arguments into.
	retained []any
	// received are the buffers cabi_realloc gave ferry for the coming call.
	received []any
	// initResult and processResult are the memory areas the two exports
	// return a pointer to.
	initResult    [3]uint32
	processResult [6]uint32
	// empty is where a buffer of no bytes points (8-aligned).
	empty uint64
)

// adapterArena is memory for wasmtime's WASI adapter, which ferry's build
// adds to the module with it: the adapter allocates its state at its first
// WASI call, which Go's runtime makes before any Go export can run, and
// memory it grew would be taken by Go's heap too. ferry's builder finds the
// arena by its first bytes and gives the adapter an allocator over it
// (plugin-build/src/go/patch.rs); Go's heap never uses its data.
var adapterArena = [192 << 10]byte{'f', 'e', 'r', 'r', 'y', ':', 'g', 'o', '-', 'a', 'd', 'a', 'p', 't', 'e', 'r', '-', 'a', 'r', 'e', 'n', 'a', ':', 'v', '1', ':', '7', 'c', '1', 'd', '9', '3'}

// init keeps the arena in the module: the linker drops what no code uses.
func init() { keepUntilHere(&adapterArena[0]) }

// cabiRealloc is the allocator ferry writes arguments with (only fresh
// allocations: ferry never grows a buffer it handed over).
//
//go:wasmexport cabi_realloc
func cabiRealloc(old unsafe.Pointer, oldSize, align, size uint32) unsafe.Pointer {
	if size == 0 {
		return unsafe.Pointer(&empty)
	}
	// Go's allocations of 8 bytes and more are 8-aligned; ferry asks for at
	// most 4 (bytes and strings: 1).
	buffer := make([]uint64, (size+7)/8)
	if old != nil && oldSize > 0 {
		copy(unsafe.Slice((*byte)(unsafe.Pointer(&buffer[0])), size), unsafe.Slice((*byte)(old), min(oldSize, size)))
	}
	received = append(received, buffer)
	return unsafe.Pointer(&buffer[0])
}

// takeArguments moves the call's argument buffers to `retained`, freeing
// what the previous call handed out.
func takeArguments() {
	retained = append(retained[:0], received...)
	clear(received)
	received = received[:0]
}

// exportInit is `init: func(config: string) -> result<_, string>`.
//
//go:wasmexport ferry:plugin/guest@0.2.0#init
func exportInit(config unsafe.Pointer, length uint32) unsafe.Pointer {
	takeArguments()
	message, ok := initialise(bytesAt(config, length))
	if ok {
		initResult[0] = 0
	} else {
		initResult[0] = 1
		initResult[1], initResult[2] = lowerString(message)
	}
	return unsafe.Pointer(&initResult[0])
}

// exportProcess is `process: func(events: list<u8>) -> output`.
//
//go:wasmexport ferry:plugin/guest@0.2.0#process
func exportProcess(events unsafe.Pointer, length uint32) unsafe.Pointer {
	takeArguments()
	outcomes := process(bytesAt(events, length))
	lowerOutput(outcomes, &processResult)
	return unsafe.Pointer(&processResult[0])
}

// lowerOutput writes the `output` record of outcomes into out: a verdict
// each, the new JSON of each replaced event on a line of its own, and each
// distinct sink list once.
func lowerOutput(outcomes []Outcome, out *[6]uint32) {
	verdicts := make([]byte, 12*len(outcomes))
	size := 0
	for _, o := range outcomes {
		if json := o.JSON(); json != nil {
			size += len(json) + 1
		}
	}
	lines := make([]byte, 0, size)
	var routes [][]string
	for i, o := range outcomes {
		v := verdicts[12*i : 12*i+12]
		v[0] = byte(o.kind)
		switch o.kind {
		case kindReplace:
			lines = appendLine(lines, o.json)
		case kindRoute:
			binary.LittleEndian.PutUint32(v[4:], sinkList(&routes, o.sinks))
			if o.json != nil {
				v[8] = 1
				lines = appendLine(lines, o.json)
			}
		case kindFail:
			ptr, n := lowerString(o.reason)
			binary.LittleEndian.PutUint32(v[4:], ptr)
			binary.LittleEndian.PutUint32(v[8:], n)
		}
	}
	out[0], out[1] = lowerBytes(verdicts), uint32(len(outcomes))
	out[2], out[3] = lowerBytes(lines), uint32(len(lines))
	table := make([]uint32, 2*len(routes))
	for i, sinks := range routes {
		names := make([]uint32, 2*len(sinks))
		for j, sink := range sinks {
			names[2*j], names[2*j+1] = lowerString(sink)
		}
		table[2*i], table[2*i+1] = lowerWords(names), uint32(len(sinks))
	}
	out[4], out[5] = lowerWords(table), uint32(len(routes))
}

// appendLine appends json as one line: a line break in it would split the
// event in two, and JSON allows none outside strings but whitespace.
func appendLine(lines, json []byte) []byte {
	for _, b := range json {
		if b == '\n' || b == '\r' {
			b = ' '
		}
		lines = append(lines, b)
	}
	return append(lines, '\n')
}

// sinkList is the index of sinks in the batch's table, adding it when new.
func sinkList(routes *[][]string, sinks []string) uint32 {
	for i, known := range *routes {
		if equal(known, sinks) {
			return uint32(i)
		}
	}
	*routes = append(*routes, sinks)
	return uint32(len(*routes) - 1)
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// bytesAt is the n bytes ferry wrote at ptr (into a buffer of cabi_realloc).
func bytesAt(ptr unsafe.Pointer, n uint32) []byte {
	if n == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(ptr), n)
}

// lowerString is the (ptr, len) of s, kept alive until the next call.
func lowerString(s string) (uint32, uint32) {
	if len(s) == 0 {
		return 1, 0
	}
	retained = append(retained, s)
	return address(unsafe.Pointer(unsafe.StringData(s))), uint32(len(s))
}

// lowerBytes is the address of b's data, kept alive until the next call.
func lowerBytes(b []byte) uint32 {
	if len(b) == 0 {
		return 1
	}
	retained = append(retained, b)
	return address(unsafe.Pointer(&b[0]))
}

// lowerWords is the address of w's data, kept alive until the next call.
func lowerWords(w []uint32) uint32 {
	if len(w) == 0 {
		return 4
	}
	retained = append(retained, w)
	return address(unsafe.Pointer(&w[0]))
}

// address is a pointer as the 32-bit offset into linear memory it is.
func address(p unsafe.Pointer) uint32 { return uint32(uintptr(p)) }

//go:wasmimport ferry:plugin/host@0.2.0 log
func importLog(level uint32, message unsafe.Pointer, length uint32, fields unsafe.Pointer, count uint32)

//go:wasmimport ferry:plugin/host@0.2.0 count
func importCount(name unsafe.Pointer, length uint32, delta uint64)

// hostLog lowers `log: func(level, message: string, fields:
// list<tuple<string, string>>)`; keyValues has an even length.
func hostLog(level Level, message string, keyValues []string) {
	fields := make([]uint32, 2*len(keyValues))
	for i, s := range keyValues {
		fields[2*i], fields[2*i+1] = address(unsafe.Pointer(unsafe.StringData(s))), uint32(len(s))
	}
	var fieldsPtr unsafe.Pointer
	if len(fields) > 0 {
		fieldsPtr = unsafe.Pointer(&fields[0])
	}
	importLog(uint32(level), unsafe.Pointer(unsafe.StringData(message)), uint32(len(message)), fieldsPtr, uint32(len(keyValues)/2))
	keepUntilHere(fields, keyValues, message)
}

// hostCount lowers `count: func(name: string, delta: u64)`.
func hostCount(name string, delta uint64) {
	importCount(unsafe.Pointer(unsafe.StringData(name)), uint32(len(name)), delta)
	keepUntilHere(name)
}

// keepUntilHere keeps its arguments reachable until it is called: the host
// reads them during the import call before it.
//
//go:noinline
func keepUntilHere(...any) {}
