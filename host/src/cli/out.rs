//! A command's answer on stdout, for a reader that may stop reading early.
//!
//! `ferry dead-letters | head -1` closes the pipe after one line. Rust
//! ignores SIGPIPE, so the next write fails with `BrokenPipe`, and
//! `println!` panics on it (exit 101). A command-line tool should stop
//! quietly instead, as one killed by SIGPIPE does. SIGPIPE itself is not
//! restored: ferry's sinks and probes write to sockets, where a closed peer
//! must be an error to report, not the end of the process. So every command
//! writes its answer through [`Stdout`] (or [`say!`]), which remembers that
//! the reader went away; [`super::main`] then exits without a word.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

/// Set once a write to stdout met a closed pipe.
static CLOSED: AtomicBool = AtomicBool::new(false);

/// Whether the reader of stdout went away while a command wrote to it.
pub fn closed() -> bool {
    CLOSED.load(Ordering::Relaxed)
}

/// Notes a failed write's error: a closed pipe is remembered.
fn noted(err: std::io::Error) -> std::io::Error {
    if err.kind() == std::io::ErrorKind::BrokenPipe {
        CLOSED.store(true, Ordering::Relaxed);
    }
    err
}

/// Stdout, remembering a closed pipe (see the module's doc).
pub struct Stdout(std::io::StdoutLock<'static>);

impl Stdout {
    /// Stdout, locked for as long as this lives.
    pub fn lock() -> Stdout {
        Stdout(std::io::stdout().lock())
    }
}

impl Write for Stdout {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf).map_err(noted)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush().map_err(noted)
    }
}

/// Writes `text` and a line end to stdout and flushes it: an error (a
/// closed pipe among them) instead of `println!`'s panic.
pub fn line(text: std::fmt::Arguments<'_>) -> std::io::Result<()> {
    let mut out = Stdout::lock();
    out.write_fmt(text).and_then(|()| out.write_all(b"\n")).and_then(|()| out.flush())
}

/// `println!` for a command's answer: `say!(...)?` stops the command when
/// stdout cannot be written (see the module's doc).
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::cli::out::line(format_args!($($arg)*))
    };
}
pub(crate) use say;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_broken_pipe_is_remembered_and_other_errors_are_not() {
        let other = noted(std::io::Error::other("disk full"));
        assert_eq!(other.kind(), std::io::ErrorKind::Other);
        assert!(!closed(), "only a closed pipe counts");
        let broken = noted(std::io::Error::from(std::io::ErrorKind::BrokenPipe));
        assert_eq!(broken.kind(), std::io::ErrorKind::BrokenPipe, "the error itself is passed on");
        assert!(closed());
    }
}
