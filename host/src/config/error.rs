use std::path::PathBuf;

/// A config file that cannot be used, with where the problem is.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file (or a file it names) cannot be read.
    #[error("cannot read {}: {}", escaped(&path.display().to_string()), escaped(&source.to_string()))]
    Read {
        /// The file that could not be read.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The text is not valid TOML or does not fit ferry's schema.
    #[error("{}:{line}:{column}: {}", escaped(&path.display().to_string()), escaped(message))]
    Parse {
        /// The file with the error.
        path: PathBuf,
        /// 1-based line of the error.
        line: usize,
        /// 1-based column of the error.
        column: usize,
        /// What is wrong, on one line.
        message: String,
    },
    /// The file parses but a value cannot work.
    #[error("{}: `{}`: {}", escaped(&path.display().to_string()), escaped(key), escaped(message))]
    Invalid {
        /// The config file.
        path: PathBuf,
        /// The key, dotted from the top (`sinks.default.path`).
        key: String,
        /// What is wrong and what to do.
        message: String,
    },
}

impl ConfigError {
    /// Turns a TOML error into a one-line error naming the file, line and column.
    pub fn from_toml(path: PathBuf, text: &str, error: &toml::de::Error) -> ConfigError {
        let offset = error.span().map(|span| span.start).unwrap_or(0);
        let (line, column) = line_and_column(text, offset);
        let message = error.message().trim().replace('\n', " ");
        ConfigError::Parse { path, line, column, message }
    }

    /// An invalid value under `key` in `path`.
    pub fn invalid(path: impl Into<PathBuf>, key: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError::Invalid { path: path.into(), key: key.into(), message: message.into() }
    }
}

/// `text` with every control character (line breaks above all) and Unicode
/// line separator escaped: an error quotes values from the file and from
/// the environment, and must still print as one line a log can hold.
fn escaped(text: &str) -> String {
    if !text.chars().any(needs_escape) {
        return text.to_owned();
    }
    text.chars().map(|c| if needs_escape(c) { c.escape_default().to_string() } else { c.to_string() }).collect()
}

fn needs_escape(c: char) -> bool {
    c.is_control() || c == '\u{2028}' || c == '\u{2029}'
}

fn line_and_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text.as_bytes()[..offset.min(text.len())];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let line_start = before.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    (line, offset.min(text.len()) - line_start + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_become_lines_and_columns() {
        let text = "a = 1\nbb = 2\n";
        assert_eq!(line_and_column(text, 0), (1, 1));
        assert_eq!(line_and_column(text, 6), (2, 1));
        assert_eq!(line_and_column(text, 9), (2, 4));
        assert_eq!(line_and_column(text, 1000), (3, 1));
    }

    #[test]
    fn values_with_line_breaks_still_print_on_one_line() {
        let error = ConfigError::invalid(
            "/etc/ferry/ferry.toml",
            "FDFWD_BATCH",
            "environment variable FDFWD_BATCH: `1\r\n2\u{2028}` is not a whole number",
        );
        assert_eq!(
            error.to_string(),
            "/etc/ferry/ferry.toml: `FDFWD_BATCH`: environment variable FDFWD_BATCH: `1\\r\\n2\\u{2028}` is not a whole number"
        );
        let parse = ConfigError::Parse { path: "a\nb.toml".into(), line: 1, column: 2, message: "bad\tvalue".into() };
        assert_eq!(parse.to_string(), "a\\nb.toml:1:2: bad\\tvalue");
    }
}
