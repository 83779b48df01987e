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

/// Writes the body for `events` into `body` (emptied first, its room kept)
/// and returns its content type.
pub fn write_body(events: &[OutEvent], format: BodyFormat, body: &mut Vec<u8>) -> &'static str {
    body.clear();
    body.reserve(events.iter().map(|e| e.json.len() + 1).sum::<usize>() + 2);
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
            "application/json"
        }
        BodyFormat::Ndjson => {
            for event in events {
                body.extend_from_slice(&event.json);
                body.push(b'\n');
            }
            "application/x-ndjson"
        }
        BodyFormat::Single => {
            for event in events {
                body.extend_from_slice(&event.json);
            }
            "application/json"
        }
    }
}

/// gzip at a fast level into `out` (emptied first): bodies are JSON, which
/// compresses well even so.
pub fn gzip(body: &[u8], mut out: Vec<u8>) -> std::io::Result<Vec<u8>> {
    out.clear();
    out.reserve(body.len() / 4);
    let mut encoder = flate2::write::GzEncoder::new(out, flate2::Compression::fast());
    encoder.write_all(body)?;
    encoder.finish()
}

/// Request bodies kept for the next requests. A full batch's body is
/// hundreds of kilobytes; a fresh one per request costs fresh pages from
/// the allocator (often the kernel) and, for gzip, growth by copying. A body
/// comes back once hyper has dropped its last reference to it. At most
/// `keep` buffers of at most [`KEEP_BYTES`] each are kept, so what is held
/// while idle stays small and bounded.
pub struct Buffers {
    free: std::sync::Mutex<Vec<Vec<u8>>>,
    keep: usize,
}

/// The largest buffer kept for reuse; a larger one (a huge batch) is freed.
pub const KEEP_BYTES: usize = 4 << 20;

impl Buffers {
    /// Keeps at most `keep` buffers.
    pub fn new(keep: usize) -> Buffers {
        Buffers { free: std::sync::Mutex::new(Vec::with_capacity(keep)), keep }
    }

    fn free(&self) -> std::sync::MutexGuard<'_, Vec<Vec<u8>>> {
        // A panic while holding the lock leaves a list of spare buffers,
        // which is still a list of spare buffers.
        self.free.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// An empty buffer, with the room of one used before if any is kept.
    pub fn take(&self) -> Vec<u8> {
        self.free().pop().unwrap_or_default()
    }

    /// Keeps `buffer` for a later request, unless enough are kept.
    pub fn put(&self, mut buffer: Vec<u8>) {
        if buffer.capacity() == 0 || buffer.capacity() > KEEP_BYTES {
            return;
        }
        buffer.clear();
        let mut free = self.free();
        if free.len() < self.keep {
            free.push(buffer);
        }
    }

    /// Takes a sent body back, if nothing else holds it any more.
    pub fn recover(&self, body: bytes::Bytes) {
        if let Ok(body) = body.try_into_mut() {
            self.put(Vec::from(body));
        }
    }

    /// How many buffers are kept now.
    #[cfg(test)]
    pub fn kept(&self) -> usize {
        self.free().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(sizes: &[usize]) -> Vec<OutEvent> {
        sizes
            .iter()
            .enumerate()
            .map(|(i, &n)| OutEvent {
                id: i.to_string(),
                json: format!("{{\"p\":\"{}\"}}", "x".repeat(n.saturating_sub(8))).into_bytes(),
                ..Default::default()
            })
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
        let body = |events: &[OutEvent], format| {
            // A buffer left over from a longer body: it is emptied first.
            let mut out = b"left over from the request before".to_vec();
            let content_type = write_body(events, format, &mut out);
            (out, content_type)
        };
        assert_eq!(body(&batch, BodyFormat::JsonArray), (b"[{\"a\":1},{\"b\":2}]".to_vec(), "application/json"));
        assert_eq!(body(&batch, BodyFormat::Ndjson), (b"{\"a\":1}\n{\"b\":2}\n".to_vec(), "application/x-ndjson"));
        assert_eq!(body(&batch[..1], BodyFormat::Single), (b"{\"a\":1}".to_vec(), "application/json"));
    }

    #[test]
    fn a_body_handed_back_is_reused_with_its_room() {
        let buffers = Buffers::new(2);
        let mut body = buffers.take();
        let batch: Vec<OutEvent> =
            (0..100).map(|i| OutEvent { id: i.to_string(), json: format!("{{\"i\":{i}}}").into_bytes(), ..Default::default() }).collect();
        write_body(&batch, BodyFormat::JsonArray, &mut body);
        let room = body.capacity();
        let sent = bytes::Bytes::from(body);
        let held = sent.clone();
        buffers.recover(sent);
        assert_eq!(buffers.kept(), 0, "a body still held elsewhere is not taken back");
        drop(held);
        let mut body = buffers.take();
        write_body(&batch, BodyFormat::JsonArray, &mut body);
        let sent = bytes::Bytes::from(body);
        buffers.recover(sent);
        let again = buffers.take();
        assert!(again.is_empty() && again.capacity() >= room, "the room is kept: {} of {room}", again.capacity());
        buffers.put(again);
        buffers.put(Vec::with_capacity(10));
        buffers.put(Vec::with_capacity(10));
        assert_eq!(buffers.kept(), 2, "no more than `keep` are kept");
        buffers.put(Vec::with_capacity(KEEP_BYTES + 1));
        assert_eq!(buffers.kept(), 2);
    }

    #[test]
    fn gzip_round_trips() {
        let original = b"[{\"event\":\"user.login\"}]".repeat(100);
        let packed = gzip(&original, b"stale".to_vec()).expect("gzip");
        assert!(packed.len() < original.len());
        let mut unpacked = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&packed[..]), &mut unpacked).expect("gunzip");
        assert_eq!(unpacked, original);
    }
}
