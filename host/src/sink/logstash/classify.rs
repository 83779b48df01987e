//! The one place that decides what an HTTP answer means for a request.

use hyper::StatusCode;
use hyper::header::{HeaderMap, RETRY_AFTER};
use std::time::Duration;

/// What to do after one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The receiver took the request: its events are acknowledged.
    Acknowledged,
    /// Worth trying again: the receiver is down, busy or slow.
    Retry {
        /// What happened, on one line.
        reason: String,
        /// The wait the receiver asked for (`Retry-After`), if any.
        after: Option<Duration>,
    },
    /// The body is too large for the receiver (413): split it, or give up
    /// on a single event.
    TooLarge,
    /// The receiver refused the request for good (a 4xx other than 408,
    /// 413 and 429): its events go to the dead-letter table.
    Refused {
        /// Status and the start of the body.
        reason: String,
    },
}

/// Classifies a response. `success` lists the acknowledging statuses; empty
/// means any 2xx. Transport errors (connect, TLS, timeout) are classified by
/// the caller as [`Verdict::Retry`].
pub fn classify(status: StatusCode, headers: &HeaderMap, body: &[u8], success: &[u16]) -> Verdict {
    let acknowledged = if success.is_empty() { status.is_success() } else { success.contains(&status.as_u16()) };
    if acknowledged {
        return Verdict::Acknowledged;
    }
    let reason = format!("HTTP {status}{}", excerpt(body));
    match status.as_u16() {
        429 => Verdict::Retry { reason, after: retry_after(headers) },
        408 => Verdict::Retry { reason, after: None },
        413 => Verdict::TooLarge,
        501 => Verdict::Refused { reason },
        code if code >= 500 => Verdict::Retry { reason, after: retry_after(headers) },
        code if (400..500).contains(&code) => Verdict::Refused { reason },
        // A 1xx, 2xx or 3xx not listed as success: the receiver does not
        // take events this way; retrying cannot help.
        _ => Verdict::Refused { reason: format!("{reason} (not a success status for this sink)") },
    }
}

/// `Retry-After` in seconds (the HTTP-date form is rare and ignored).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let seconds: u64 = headers.get(RETRY_AFTER)?.to_str().ok()?.trim().parse().ok()?;
    Some(Duration::from_secs(seconds))
}

/// ": " and the first 200 characters of a body, on one line.
fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(200)]);
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if text.is_empty() { String::new() } else { format!(": {text}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(code: u16, success: &[u16]) -> Verdict {
        let status = StatusCode::from_u16(code).expect("valid status");
        classify(status, &HeaderMap::new(), b"", success)
    }

    #[test]
    fn every_status_class_has_its_verdict() {
        let table: &[(u16, &[u16], &str)] = &[
            (200, &[], "ack"),
            (201, &[], "ack"),
            (204, &[], "ack"),
            (201, &[200], "refused"),
            (201, &[200, 201], "ack"),
            (302, &[], "refused"),
            (400, &[], "refused"),
            (401, &[], "refused"),
            (404, &[], "refused"),
            (408, &[], "retry"),
            (413, &[], "too-large"),
            (429, &[], "retry"),
            (500, &[], "retry"),
            (501, &[], "refused"),
            (502, &[], "retry"),
            (503, &[], "retry"),
        ];
        for (code, success, expected) in table {
            let got = match verdict(*code, success) {
                Verdict::Acknowledged => "ack",
                Verdict::Retry { .. } => "retry",
                Verdict::TooLarge => "too-large",
                Verdict::Refused { .. } => "refused",
            };
            assert_eq!(got, *expected, "HTTP {code} with success {success:?}");
        }
    }

    #[test]
    fn retry_after_and_body_excerpts_are_kept() {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, "7".parse().expect("header"));
        assert_eq!(
            classify(StatusCode::TOO_MANY_REQUESTS, &headers, b"", &[]),
            Verdict::Retry { reason: "HTTP 429 Too Many Requests".into(), after: Some(Duration::from_secs(7)) }
        );
        let refused = classify(StatusCode::BAD_REQUEST, &HeaderMap::new(), b"bad\nevent  here", &[]);
        assert_eq!(refused, Verdict::Refused { reason: "HTTP 400 Bad Request: bad event here".into() });
    }
}
