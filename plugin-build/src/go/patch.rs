//! Two changes to a Go module before it becomes a component, both for what
//! Go's runtime does while `_initialize` starts it, before any Go code of
//! the plugin (or any Go export) can run.
//!
//! The clock: ferry's WASI clocks are frozen at zero, and Go's runtime
//! refuses a monotonic clock that reads zero (`nanotime returning zero`).
//! Worse, Go's allocator reads the clock, also in `cabi_realloc`, where the
//! component model forbids calling an import (the call traps: "cannot leave
//! component instance"). So every call of the module's `clock_time_get`
//! import goes to a function that answers 1 ns without calling out: the
//! clock stays frozen, at 1 ns.
//!
//! Memory for wasmtime's WASI adapter: the adapter that turns WASI preview-1 calls into preview-2 ones keeps a
//! little state (and a stack) in the module's memory, allocated at its first
//! call. It asks the module's `cabi_realloc_adapter` (else `cabi_realloc`)
//! for it; the alternative, `memory.grow`, hands it pages that Go's heap
//! also takes, since Go assumes it alone grows memory. Go's runtime makes
//! its first WASI calls while `_initialize` starts it, when no Go export can
//! run yet, so the allocator cannot be Go code.
//!
//! So ferry's Go SDK reserves an arena in the module's data (a byte array
//! that starts with [`MARK`]; Go's heap never uses its data), and this adds
//! `cabi_realloc_adapter` to the module in plain WebAssembly: a bump
//! allocator over that arena, which traps when it is used up. The adapter
//! allocates once per instance and never frees.

use crate::Failure;
use wasm_encoder::reencode::{self, Reencode};
use wasm_encoder::{
    BlockType, CodeSection, ConstExpr, ExportKind, ExportSection, Function, FunctionSection, GlobalSection, GlobalType, MemArg, ValType,
};
use wasmparser::{Parser, Payload};

/// The first bytes of the SDK's arena (`adapterArena` in `abi.go`).
pub const MARK: &[u8] = b"ferry:go-adapter-arena:v1:7c1d93";

/// The arena's size, as the SDK declares it.
pub const SIZE: u32 = 192 << 10;

/// The export the adapter takes its allocator from.
const EXPORT: &str = "cabi_realloc_adapter";

/// The WASI preview-1 import Go's runtime reads its clocks with.
const CLOCK: (&str, &str) = ("wasi_snapshot_preview1", "clock_time_get");

/// `module` with `cabi_realloc_adapter` allocating from the SDK's arena,
/// and its clock reading 1 ns later.
pub fn prepare(module: &[u8]) -> Result<Vec<u8>, Failure> {
    let layout = Layout::of(module)?;
    let mut adder = Adder { layout, done: 0 };
    let mut out = wasm_encoder::Module::new();
    adder
        .parse_core_module(&mut out, Parser::new(0), module)
        .map_err(|err| format!("cannot add the WASI adapter's allocator to the module: {err}"))?;
    if adder.done != 5 {
        return Err(
            "cannot add the WASI adapter's allocator to the module: it lacks a type, function, global, export or code section".to_owned()
        );
    }
    Ok(out.finish())
}

/// Where the new type, function and global go, and where the arena is.
#[derive(Default)]
struct Layout {
    types: u32,
    functions: u32,
    globals: u32,
    arena: Option<u32>,
    /// The function index and type of the clock import, if there is one.
    clock: Option<(u32, u32)>,
}

impl Layout {
    fn of(module: &[u8]) -> Result<Layout, Failure> {
        let invalid = |err: wasmparser::BinaryReaderError| format!("not a WebAssembly module: {err}");
        let mut layout = Layout::default();
        for payload in Parser::new(0).parse_all(module) {
            match payload.map_err(invalid)? {
                Payload::TypeSection(reader) => {
                    for group in reader {
                        layout.types += u32::try_from(group.map_err(invalid)?.types().len()).unwrap_or(u32::MAX);
                    }
                }
                Payload::ImportSection(reader) => {
                    for import in reader.into_imports() {
                        let import = import.map_err(invalid)?;
                        match import.ty {
                            wasmparser::TypeRef::Func(ty) => {
                                if (import.module, import.name) == CLOCK {
                                    layout.clock = Some((layout.functions, ty));
                                }
                                layout.functions += 1;
                            }
                            wasmparser::TypeRef::Global(_) => layout.globals += 1,
                            _ => {}
                        }
                    }
                }
                Payload::FunctionSection(reader) => layout.functions += reader.count(),
                Payload::GlobalSection(reader) => layout.globals += reader.count(),
                Payload::DataSection(reader) => {
                    for data in reader {
                        let data = data.map_err(invalid)?;
                        if let (wasmparser::DataKind::Active { offset_expr, .. }, Some(at)) =
                            (data.kind, data.data.windows(MARK.len()).position(|window| window == MARK))
                        {
                            let mut ops = offset_expr.get_operators_reader();
                            if let Ok(wasmparser::Operator::I32Const { value }) = ops.read() {
                                layout.arena = u32::try_from(value).ok().and_then(|start| start.checked_add(u32::try_from(at).ok()?));
                            }
                        }
                    }
                }
                _ => {}
            }
        }
        if layout.arena.is_none() {
            return Err(
                "the module has no arena for the WASI adapter: build it with ferry's Go SDK (ferry.dev/plugin), which reserves one"
                    .to_owned(),
            );
        }
        Ok(layout)
    }
}

/// Copies the module, adding to its sections as it goes.
struct Adder {
    layout: Layout,
    /// How many of the five additions were made.
    done: u32,
}

impl Reencode for Adder {
    type Error = std::convert::Infallible;

    /// Calls of the clock import go to the frozen clock, the second function added.
    fn function_index(&mut self, func: u32) -> Result<u32, reencode::Error<Self::Error>> {
        Ok(match self.layout.clock {
            Some((clock, _)) if clock == func => self.layout.functions + 1,
            _ => func,
        })
    }

    fn parse_type_section(
        &mut self,
        types: &mut wasm_encoder::TypeSection,
        section: wasmparser::TypeSectionReader<'_>,
    ) -> Result<(), reencode::Error<Self::Error>> {
        reencode::utils::parse_type_section(self, types, section)?;
        types.ty().function([ValType::I32; 4], [ValType::I32]);
        self.done += 1;
        Ok(())
    }

    fn parse_function_section(
        &mut self,
        functions: &mut FunctionSection,
        section: wasmparser::FunctionSectionReader<'_>,
    ) -> Result<(), reencode::Error<Self::Error>> {
        reencode::utils::parse_function_section(self, functions, section)?;
        functions.function(self.layout.types);
        if let Some((_, ty)) = self.layout.clock {
            functions.function(ty);
        }
        self.done += 1;
        Ok(())
    }

    fn parse_global_section(
        &mut self,
        globals: &mut GlobalSection,
        section: wasmparser::GlobalSectionReader<'_>,
    ) -> Result<(), reencode::Error<Self::Error>> {
        reencode::utils::parse_global_section(self, globals, section)?;
        let start = self.layout.arena.unwrap_or_default() + u32::try_from(MARK.len()).unwrap_or_default();
        globals.global(GlobalType { val_type: ValType::I32, mutable: true, shared: false }, &ConstExpr::i32_const(start.cast_signed()));
        self.done += 1;
        Ok(())
    }

    fn parse_export_section(
        &mut self,
        exports: &mut ExportSection,
        section: wasmparser::ExportSectionReader<'_>,
    ) -> Result<(), reencode::Error<Self::Error>> {
        reencode::utils::parse_export_section(self, exports, section)?;
        exports.export(EXPORT, ExportKind::Func, self.layout.functions);
        self.done += 1;
        Ok(())
    }

    fn parse_code_section(
        &mut self,
        code: &mut CodeSection,
        section: wasmparser::CodeSectionReader<'_>,
    ) -> Result<(), reencode::Error<Self::Error>> {
        reencode::utils::parse_code_section(self, code, section)?;
        code.function(&self.bump_allocator());
        if self.layout.clock.is_some() {
            code.function(&frozen_clock());
        }
        self.done += 1;
        Ok(())
    }
}

impl Adder {
    /// `(old_ptr, old_size, align, new_size) -> ptr`: the arena's next
    /// `new_size` bytes at `align`; a trap when they are not there.
    fn bump_allocator(&self) -> Function {
        let next = self.layout.globals;
        let end = (self.layout.arena.unwrap_or_default() + SIZE).cast_signed();
        let (align, size, ptr) = (2, 3, 4);
        let mut function = Function::new([(1, ValType::I32)]);
        function
            .instructions()
            // ptr = (next + align - 1) & -align
            .global_get(next)
            .local_get(align)
            .i32_add()
            .i32_const(1)
            .i32_sub()
            .i32_const(0)
            .local_get(align)
            .i32_sub()
            .i32_and()
            .local_tee(ptr)
            // if ptr + size > end: trap
            .local_get(size)
            .i32_add()
            .i32_const(end)
            .i32_gt_u()
            .if_(BlockType::Empty)
            .unreachable()
            .end()
            // next = ptr + size; ptr
            .local_get(ptr)
            .local_get(size)
            .i32_add()
            .global_set(next)
            .local_get(ptr)
            .end();
        function
    }
}

/// `clock_time_get(id, precision, out) -> errno`: 1 ns, for every clock,
/// without calling the import (ferry's clocks are frozen anyway).
fn frozen_clock() -> Function {
    let out = 2;
    let mut function = Function::new([]);
    function.instructions().local_get(out).i64_const(1).i64_store(MemArg { offset: 0, align: 3, memory_index: 0 }).i32_const(0).end();
    function
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasm_encoder::{DataSection, EntityType, ImportSection, MemorySection, MemoryType, Module, TypeSection};

    /// A module shaped as Go's: the clock import, one function calling it,
    /// a global, an export, and (with `arena`) the SDK's arena in its data.
    fn go_like(arena: bool) -> Vec<u8> {
        let mut module = Module::new();
        let mut types = TypeSection::new();
        types.ty().function([ValType::I32, ValType::I64, ValType::I32], [ValType::I32]);
        types.ty().function([], [ValType::I32]);
        module.section(&types);
        let mut imports = ImportSection::new();
        imports.import(CLOCK.0, CLOCK.1, EntityType::Function(0));
        module.section(&imports);
        let mut functions = FunctionSection::new();
        functions.function(1);
        module.section(&functions);
        let mut memories = MemorySection::new();
        memories.memory(MemoryType { minimum: 8, maximum: None, memory64: false, shared: false, page_size_log2: None });
        module.section(&memories);
        let mut globals = GlobalSection::new();
        globals.global(GlobalType { val_type: ValType::I32, mutable: true, shared: false }, &ConstExpr::i32_const(0));
        module.section(&globals);
        let mut exports = ExportSection::new();
        exports.export("now", ExportKind::Func, 1).export("memory", ExportKind::Memory, 0);
        module.section(&exports);
        let mut code = CodeSection::new();
        let mut now = Function::new([]);
        now.instructions().i32_const(1).i64_const(0).i32_const(64).call(0).end();
        code.function(&now);
        module.section(&code);
        if arena {
            let mut data = DataSection::new();
            data.active(0, &ConstExpr::i32_const(4096), MARK.iter().copied());
            module.section(&data);
        }
        module.finish()
    }

    #[test]
    fn a_go_module_gets_the_adapters_allocator_and_a_frozen_clock() {
        let prepared = prepare(&go_like(true)).expect("prepared");
        wasmparser::Validator::new().validate_all(&prepared).expect("valid");
        let mut exports = Vec::new();
        let mut calls = Vec::new();
        for payload in Parser::new(0).parse_all(&prepared) {
            match payload.expect("parses") {
                Payload::ExportSection(reader) => {
                    exports.extend(reader.into_iter().map(|export| export.map(|e| (e.name.to_owned(), e.index)).expect("export")));
                }
                Payload::CodeSectionEntry(body) => {
                    for op in body.get_operators_reader().expect("code") {
                        if let Ok(wasmparser::Operator::Call { function_index }) = op {
                            calls.push(function_index);
                        }
                    }
                }
                _ => {}
            }
        }
        // Functions: 0 the import, 1 `now`, 2 the allocator, 3 the frozen clock.
        assert_eq!(exports, [("now".to_owned(), 1), ("memory".to_owned(), 0), (EXPORT.to_owned(), 2)]);
        assert_eq!(calls, [3], "`now` reads the frozen clock, and nothing calls the import");
    }

    #[test]
    fn a_module_without_the_sdks_arena_is_refused_on_one_line() {
        let err = prepare(&go_like(false)).expect_err("no arena");
        assert_eq!(
            err,
            "the module has no arena for the WASI adapter: build it with ferry's Go SDK (ferry.dev/plugin), which reserves one"
        );
    }
}
