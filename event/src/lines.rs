//! JSON Lines framing: a batch crosses between host and plugin as one buffer,
//! one event per line, each way (`wit/plugin.wit` says why).

/// Appends `json` to `buffer` as one line.
///
/// A raw line break can stand in valid JSON only as whitespace between
/// tokens (JSON forbids one inside a string), so each is written as a space:
/// the reader sees the same JSON, on one line.
pub fn push_line(buffer: &mut Vec<u8>, json: &[u8]) {
    let start = buffer.len();
    buffer.extend_from_slice(json);
    if memchr::memchr(b'\n', json).is_some() {
        buffer[start..].iter_mut().filter(|byte| **byte == b'\n').for_each(|byte| *byte = b' ');
    }
    buffer.push(b'\n');
}

/// The lines of a JSON Lines buffer, with or without a last line break;
/// none for an empty buffer (or a lone line break). An empty line in the
/// middle is a line: the reader decides what it means.
pub fn split(buffer: &[u8]) -> impl Iterator<Item = &[u8]> {
    let body = buffer.strip_suffix(b"\n").unwrap_or(buffer);
    let mut rest = (!body.is_empty()).then_some(body);
    std::iter::from_fn(move || {
        let text = rest?;
        match memchr::memchr(b'\n', text) {
            Some(end) => {
                rest = Some(&text[end + 1..]);
                Some(&text[..end])
            }
            None => {
                rest = None;
                Some(text)
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_break_in_json_becomes_a_space() {
        let mut buffer = b"{}\n".to_vec();
        push_line(&mut buffer, b"{\n\"a\":\n1}");
        push_line(&mut buffer, b"{\"b\":2}");
        assert_eq!(buffer, b"{}\n{ \"a\": 1}\n{\"b\":2}\n");
    }

    #[test]
    fn lines_are_split_with_or_without_a_last_line_break() {
        for buffer in [&b"{\"a\":1}\n{}\n"[..], b"{\"a\":1}\n{}"] {
            assert_eq!(split(buffer).collect::<Vec<_>>(), [&b"{\"a\":1}"[..], b"{}"]);
        }
        assert_eq!(split(b"").count(), 0);
        assert_eq!(split(b"\n").count(), 0);
        assert_eq!(split(b"{}\n\n{}").collect::<Vec<_>>(), [&b"{}"[..], b"", b"{}"]);
    }

    #[test]
    fn what_is_pushed_splits_back_into_the_same_events() {
        let events: [&[u8]; 3] = [b"{\"a\":\n[1,\n2]}", b"{}", b"{\"s\":\"x y\"}"];
        let mut buffer = Vec::new();
        for json in events {
            push_line(&mut buffer, json);
        }
        let back: Vec<serde_json::Value> = split(&buffer).map(|line| serde_json::from_slice(line).expect("JSON")).collect();
        let sent: Vec<serde_json::Value> = events.iter().map(|json| serde_json::from_slice(json).expect("JSON")).collect();
        assert_eq!(back, sent);
    }
}
