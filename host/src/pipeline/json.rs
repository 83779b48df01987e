//! Small JSON chores the pipeline needs on plugin output.

/// Removes whitespace outside strings, so that JSON a plugin pretty-printed
/// fits on one JSON Lines line. `json` must already be valid JSON.
pub fn compact(json: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(json.len());
    let mut in_string = false;
    let mut escaped = false;
    for &byte in json {
        if in_string {
            out.push(byte);
            match (escaped, byte) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
        } else if !matches!(byte, b' ' | b'\n' | b'\r' | b'\t') {
            in_string = byte == b'"';
            out.push(byte);
        }
    }
    out
}

/// True when `json` holds a raw line break, which JSON Lines cannot carry.
pub fn has_line_break(json: &[u8]) -> bool {
    json.iter().any(|&b| b == b'\n' || b == b'\r')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compacting_keeps_strings_intact() {
        let pretty = b"{\n  \"a b\": \"x \\\" y\\\\\",\n  \"c\": [1, 2]\n}";
        assert_eq!(compact(pretty), br#"{"a b":"x \" y\\","c":[1,2]}"#.to_vec());
        assert!(has_line_break(pretty));
        assert!(!has_line_break(&compact(pretty)));
    }
}
