//! What each plugin's `Store` holds: an empty WASI context, the memory
//! limiter, and what the `host` imports need.

use super::bindings::ferry::plugin::{host, types};
use crate::metrics::Metrics;
use std::borrow::Cow;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxView, WasiView};

/// Longest log message or field a plugin may write; longer text is cut so
/// that a plugin cannot flood ferry's log with one call.
const MAX_LOG_TEXT: usize = 4096;

/// Lines one plugin may log per [`LOG_WINDOW`]: 100 per 10 s, plenty for
/// a plugin reporting per batch (a batch every 200 ms is 50), while a plugin
/// logging per event cannot bury ferry's own lines or fill a disk. Lines
/// past it are counted, and the count logged once the window closes.
pub(super) const LOG_LINES_PER_WINDOW: u32 = 100;

/// The window of [`LOG_LINES_PER_WINDOW`].
pub(super) const LOG_WINDOW: Duration = Duration::from_secs(10);

/// The data of one plugin's `Store`.
pub struct PluginState {
    wasi: WasiCtx,
    table: ResourceTable,
    /// Enforces the memory cap.
    pub limiter: MemoryLimiter,
    plugin: Arc<str>,
    metrics: Arc<Metrics>,
    log_limit: Arc<Mutex<LogLimit>>,
}

impl PluginState {
    /// A state that grants the guest nothing but `max_memory` bytes of memory.
    /// `log_limit` is the plugin's, shared by every store it gets.
    pub fn new(plugin: Arc<str>, max_memory: u64, metrics: Arc<Metrics>, log_limit: Arc<Mutex<LogLimit>>) -> Self {
        let wasi = WasiCtx::builder()
            .wall_clock(FrozenClock)
            .monotonic_clock(FrozenClock)
            // No network: no name lookups, no sockets of either kind, and
            // (wasmtime's default) no address a socket may bind or connect to.
            .allow_ip_name_lookup(false)
            .allow_tcp(false)
            .allow_udp(false)
            .build();
        PluginState { wasi, table: ResourceTable::new(), limiter: MemoryLimiter { max: max_memory, used: 0 }, plugin, metrics, log_limit }
    }
}

impl WasiView for PluginState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

/// A clock that always reads zero. Plugins get no time source: time would be
/// a side channel, and events carry their own `time`.
struct FrozenClock;

impl HostWallClock for FrozenClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

impl HostMonotonicClock for FrozenClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }
    fn now(&self) -> u64 {
        0
    }
}

/// Caps the sum of all linear memories of one instance. A component may hold
/// several core modules, each with its own memory, so the cap is on the total.
pub struct MemoryLimiter {
    max: u64,
    used: u64,
}

impl MemoryLimiter {
    /// Bytes of linear memory in use now.
    pub fn used(&self) -> u64 {
        self.used
    }
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(&mut self, current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        let growth = desired.saturating_sub(current) as u64;
        let wanted = self.used.saturating_add(growth);
        if wanted > self.max {
            wasmtime::bail!("memory limit exceeded: wanted {wanted} bytes, the cap is {} bytes (max-memory)", self.max);
        }
        self.used = wanted;
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        // Tables hold function references; a million is far beyond any real guest.
        if desired > 1_000_000 {
            wasmtime::bail!("table limit exceeded: wanted {desired} elements, the cap is 1000000");
        }
        Ok(true)
    }
}

impl types::Host for PluginState {}

impl host::Host for PluginState {
    fn log(&mut self, level: types::Level, message: String, fields: Vec<(String, String)>) {
        let plugin = &*self.plugin;
        let (admitted, suppressed) = self.log_limit.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).admit(Instant::now());
        report_suppressed(plugin, suppressed);
        if !admitted {
            return;
        }
        let message = escape(clip(&message));
        let fields: Vec<String> = fields.iter().take(32).map(|(k, v)| format!("{}={}", escape(clip(k)), escape(clip(v)))).collect();
        let fields = fields.join(" ");
        match level {
            types::Level::Trace => tracing::trace!(plugin, fields, "{message}"),
            types::Level::Debug => tracing::debug!(plugin, fields, "{message}"),
            types::Level::Info => tracing::info!(plugin, fields, "{message}"),
            types::Level::Warn => tracing::warn!(plugin, fields, "{message}"),
            types::Level::Error => tracing::error!(plugin, fields, "{message}"),
        }
    }

    fn count(&mut self, name: String, delta: u64) {
        self.metrics.add_plugin_counter(&self.plugin, clip(&name), delta);
    }
}

/// How many log lines a plugin may write now: a fixed window of
/// [`LOG_WINDOW`] holding at most [`LOG_LINES_PER_WINDOW`] lines.
#[derive(Debug, Default)]
pub struct LogLimit {
    window_start: Option<Instant>,
    written: u32,
    suppressed: u64,
}

impl LogLimit {
    /// Whether a line at `now` may be written, and how many lines were
    /// suppressed in a window that has just closed (to be reported first).
    pub(super) fn admit(&mut self, now: Instant) -> (bool, u64) {
        let closed = self.close_window(now);
        if self.written < LOG_LINES_PER_WINDOW {
            self.written += 1;
            (true, closed)
        } else {
            self.suppressed += 1;
            (false, closed)
        }
    }

    /// Starts a new window when the current one is over; returns how many
    /// lines the closed window suppressed.
    pub(super) fn close_window(&mut self, now: Instant) -> u64 {
        match self.window_start {
            Some(start) if now.saturating_duration_since(start) < LOG_WINDOW => 0,
            _ => {
                self.window_start = Some(now);
                self.written = 0;
                std::mem::take(&mut self.suppressed)
            }
        }
    }
}

/// Logs that `suppressed` lines of `plugin` were not written, if any were.
pub(super) fn report_suppressed(plugin: &str, suppressed: u64) {
    if suppressed > 0 {
        tracing::warn!(plugin, suppressed, limit = LOG_LINES_PER_WINDOW, window = ?LOG_WINDOW, "Plugin log lines over the rate limit were suppressed.");
    }
}

/// The text with every control character written as an escape (`\n`,
/// `\r`, `\t`, `\u{1b}`), so that what a plugin logs stays on its own
/// line and cannot forge a line of ferry's log or drive a terminal.
fn escape(text: &str) -> Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return Cow::Borrowed(text);
    }
    let mut escaped = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => escaped.push_str("\\n"),
            '\r' => escaped.push_str("\\r"),
            '\t' => escaped.push_str("\\t"),
            c if c.is_control() => escaped.push_str(&c.escape_unicode().to_string()),
            c => escaped.push(c),
        }
    }
    Cow::Owned(escaped)
}

fn clip(text: &str) -> &str {
    if text.len() <= MAX_LOG_TEXT {
        return text;
    }
    let mut end = MAX_LOG_TEXT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_breaks_and_control_characters_are_escaped() {
        assert_eq!(escape("plain text"), "plain text");
        assert!(matches!(escape("plain text"), Cow::Borrowed(_)));
        let forged = "done.\n2026-11-30T10:00:00Z ERROR ferry: Shutdown deadline passed.\r\x1b[2K\tx";
        let escaped = escape(forged);
        assert_eq!(escaped, "done.\\n2026-11-30T10:00:00Z ERROR ferry: Shutdown deadline passed.\\r\\u{1b}[2K\\tx");
        assert!(!escaped.chars().any(char::is_control), "{escaped}");
    }

    #[test]
    fn a_plugin_logs_at_most_its_limit_per_window_and_the_rest_is_counted() {
        let mut limit = LogLimit::default();
        let start = Instant::now();
        let admitted = (0..250).filter(|_| limit.admit(start).0).count();
        assert_eq!(admitted, LOG_LINES_PER_WINDOW as usize);
        assert_eq!(limit.close_window(start + LOG_WINDOW / 2), 0, "the window is still open");
        assert!(!limit.admit(start + LOG_WINDOW / 2).0);
        // The next window reports what the last one suppressed, once.
        assert_eq!(limit.admit(start + LOG_WINDOW), (true, 151));
        assert_eq!(limit.admit(start + LOG_WINDOW), (true, 0));
        assert_eq!(limit.close_window(start + LOG_WINDOW * 3), 0, "nothing was suppressed since");
    }

    /// Fuzzing with a fixed budget, inside the normal test run: 256 cases
    /// of text a plugin logs or names a counter with, well under a second.
    mod fuzz {
        use super::*;
        use proptest::prelude::*;

        /// Text as a guest may hand it over: any characters, long enough
        /// that multi-byte ones straddle the clip.
        fn text() -> impl Strategy<Value = String> {
            prop_oneof![".{0,64}", any::<String>(), ("[é€😀\n\r]{1,4}", 1..1400usize).prop_map(|(unit, times)| unit.repeat(times))]
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            #[test]
            fn any_log_text_or_counter_name_is_clipped_and_escaped_without_panicking(text in text(), delta in any::<u64>()) {
                let clipped = clip(&text);
                prop_assert!(clipped.len() <= MAX_LOG_TEXT && text.starts_with(clipped));
                let escaped = escape(clipped);
                prop_assert!(!escaped.chars().any(char::is_control), "{}", escaped);
                let metrics = Metrics::default();
                metrics.add_plugin_counter("guest", clipped, delta);
                metrics.add_plugin_counter("guest", clipped, delta);
                let rendered = metrics.render();
                prop_assert!(rendered.ends_with("# EOF\n"), "the page is whole: {}", rendered);
            }
        }
    }
}
