//! Errors printed on one line.
//!
//! ferry reports an error as one line a log can hold: the error, then each
//! cause after `: `. Most of ferry's errors already quote their cause in
//! their own message (`cannot read x: No such file`), and hyper's and
//! tonic's repeat theirs, so a cause whose text is already on the line is
//! left out rather than printed twice. Every part (the CLI, the Teleport
//! connection, the Logstash client, the WebAssembly runtime) formats its
//! error chains here, so they all read alike.

use std::error::Error as StdError;
use std::fmt::Display;

/// `err` and its causes (its `source()` chain) on one line, each cause once.
pub fn one_line(err: &(dyn StdError + 'static)) -> String {
    join_causes(std::iter::successors(Some(err), |&err: &&(dyn StdError + 'static)| err.source()))
}

/// An error chain given as its messages, outermost first, on one line: a
/// message already contained in the line is skipped; line breaks inside a
/// message become spaces. For error types that walk their own chain
/// (`anyhow::Error::chain`, `wasmtime::Error::chain`).
pub fn join_causes<T: Display>(chain: impl IntoIterator<Item = T>) -> String {
    let mut line = String::new();
    for cause in chain {
        let text = cause.to_string().replace('\n', " ");
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Wrapped(&'static str, std::io::Error);

    impl Display for Wrapped {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }

    impl StdError for Wrapped {
        fn source(&self) -> Option<&(dyn StdError + 'static)> {
            Some(&self.1)
        }
    }

    #[test]
    fn causes_follow_on_one_line_each_once() {
        let refused = || std::io::Error::other("Connection refused");
        assert_eq!(one_line(&refused()), "Connection refused");
        assert_eq!(one_line(&Wrapped("tcp connect error", refused())), "tcp connect error: Connection refused");
        // A message that already quotes its cause is not followed by it again.
        assert_eq!(one_line(&Wrapped("tcp connect error: Connection refused", refused())), "tcp connect error: Connection refused");
        assert_eq!(one_line(&Wrapped("bad\nthing", std::io::Error::other("two\nlines"))), "bad thing: two lines");
    }

    #[test]
    fn a_chain_of_messages_joins_the_same_way() {
        assert_eq!(
            join_causes(["aborting launch", "failed to reticulate splines", "ghosts"]),
            "aborting launch: failed to reticulate splines: ghosts"
        );
        assert_eq!(join_causes(["cannot read a.wasm: gone", "gone"]), "cannot read a.wasm: gone");
        assert_eq!(join_causes(Vec::<String>::new()), "");
    }
}
