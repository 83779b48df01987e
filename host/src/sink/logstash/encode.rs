//! Laying a batch out in request bodies.

use super::BodyFormat;
use crate::sink::OutEvent;
use std::io::Write;
use std::ops::Range;

/// One request's worth of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Which events of the batch it carries.
    pub events: Range<usize>,
}

/// Splits `events` into requests: one per event for `single`, else as few
/// as fit in `max_bytes` each. An event larger than `max_bytes` travels
/// alone (the receiver decides; a 413 then dead-letters it).
pub fn plan_requests(events: &[OutEvent], format: BodyFormat, max_bytes: usize) -> Vec<Request> {
    if format == BodyFormat::Single {
        return (0..events.len()).map(|i| Request { events: i..i + 1 }).collect();
    }
    let mut requests = Vec::new();
    let mut start = 0;
    let mut size = 2; // `[` and `]`, or slack for ndjson
    for (i, event) in events.iter().enumerate() {
        let extra = event.json.len() + 1;
        if i > start && size + extra > max_bytes {
            requests.push(Request { events: start..i });
            start = i;
            size = 2;
        }
        size += extra;
    }
    if start < events.len() {
        requests.push(Request { events: start..events.len() });
    }
    requests
}

/// The body and content type for `events`.
pub fn body(events: &[OutEvent], format: BodyFormat) -> (Vec<u8>, &'static str) {
    let size = events.iter().map(|e| e.json.len() + 1).sum::<usize>() + 2;
    let mut body = Vec::with_capacity(size);
    match format {
        BodyFormat::JsonArray => {
            body.push(b'[');
            for (i, event) in events.iter().enumerate() {
                if i > 0 {
                    body.push(b',');
                }
                body.extend_from_slice(&event.json);
            }
            body.push(b']');
            (body, "application/json")
        }
        BodyFormat::Ndjson => (crate::sink::json_lines(events), "application/x-ndjson"),
        BodyFormat::Single => {
            for event in events {
                body.extend_from_slice(&event.json);
            }
            (body, "application/json")
        }
    }
}

/// gzip at a fast level: bodies are JSON, which compresses well even so.
pub fn gzip(body: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::with_capacity(body.len() / 4), flate2::Compression::fast());
    encoder.write_all(body)?;
    encoder.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(sizes: &[usize]) -> Vec<OutEvent> {
        sizes
            .iter()
            .enumerate()
            .map(|(i, &n)| OutEvent { id: i.to_string(), json: format!("{{\"p\":\"{}\"}}", "x".repeat(n.saturating_sub(8))).into_bytes(), ..Default::default() })
            .collect()
    }

    #[test]
    fn batches_split_to_stay_under_the_byte_limit() {
        let batch = events(&[40, 40, 40, 200, 10]);
        let plan: Vec<_> = plan_requests(&batch, BodyFormat::JsonArray, 100).into_iter().map(|r| r.events).collect();
        assert_eq!(plan, [0..2, 2..3, 3..4, 4..5]);
        let single: Vec<_> = plan_requests(&batch, BodyFormat::Single, 1 << 20).into_iter().map(|r| r.events).collect();
        assert_eq!(single, [0..1, 1..2, 2..3, 3..4, 4..5]);
        assert_eq!(plan_requests(&batch, BodyFormat::Ndjson, 1 << 20).len(), 1);
        assert!(plan_requests(&[], BodyFormat::JsonArray, 100).is_empty());
    }

    #[test]
    fn bodies_in_each_format() {
        let batch = vec![
            OutEvent { id: "a".into(), json: b"{\"a\":1}".to_vec(), ..Default::default() },
            OutEvent { id: "b".into(), json: b"{\"b\":2}".to_vec(), ..Default::default() },
        ];
        assert_eq!(body(&batch, BodyFormat::JsonArray), (b"[{\"a\":1},{\"b\":2}]".to_vec(), "application/json"));
        assert_eq!(body(&batch, BodyFormat::Ndjson), (b"{\"a\":1}\n{\"b\":2}\n".to_vec(), "application/x-ndjson"));
        assert_eq!(body(&batch[..1], BodyFormat::Single), (b"{\"a\":1}".to_vec(), "application/json"));
    }

    #[test]
    fn gzip_round_trips() {
        let original = b"[{\"event\":\"user.login\"}]".repeat(100);
        let packed = gzip(&original).expect("gzip");
        assert!(packed.len() < original.len());
        let mut unpacked = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&packed[..]), &mut unpacked).expect("gunzip");
        assert_eq!(unpacked, original);
    }
}
