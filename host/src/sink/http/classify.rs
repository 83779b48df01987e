//! The one place that decides what an HTTP answer means for a request.

use hyper::StatusCode;
use hyper::header::{HeaderMap, RETRY_AFTER};
use std::time::Duration;

/// What one attempt to send a request came to, and so what to do next.
/// (Not the plugin contract's `verdict`, which is a plugin's decision on
/// one event.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
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
/// the caller as [`Attempt::Retry`].
pub fn classify(status: StatusCode, headers: &HeaderMap, body: &[u8], success: &[u16]) -> Attempt {
    let acknowledged = if success.is_empty() { status.is_success() } else { success.contains(&status.as_u16()) };
    if acknowledged {
        return Attempt::Acknowledged;
    }
    let reason = format!("HTTP {status}{}", excerpt(body));
    match status.as_u16() {
        429 => Attempt::Retry { reason, after: retry_after(headers) },
        408 => Attempt::Retry { reason, after: None },
        413 => Attempt::TooLarge,
        501 => Attempt::Refused { reason },
        code if code >= 500 => Attempt::Retry { reason, after: retry_after(headers) },
        code if (400..500).contains(&code) => Attempt::Refused { reason },
        // A 1xx, 2xx or 3xx not listed as success: the receiver does not
        // take events this way; retrying cannot help.
        _ => Attempt::Refused { reason: format!("{reason} (not a success status for this sink)") },
    }
}

/// `Retry-After` in seconds (the HTTP-date form is rare and ignored; so is
/// anything else that is not a whole number of seconds). However long, the
/// wait is capped by the sink's `max-retry-after`.
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

    fn attempt(code: u16, success: &[u16]) -> Attempt {
        let status = StatusCode::from_u16(code).expect("valid status");
        classify(status, &HeaderMap::new(), b"", success)
    }

    #[test]
    fn every_status_class_is_classified() {
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
            let got = match attempt(*code, success) {
                Attempt::Acknowledged => "ack",
                Attempt::Retry { .. } => "retry",
                Attempt::TooLarge => "too-large",
                Attempt::Refused { .. } => "refused",
            };
            assert_eq!(got, *expected, "HTTP {code} with success {success:?}");
        }
    }

    fn one_line(reason: &str) -> Result<(), proptest::test_runner::TestCaseError> {
        proptest::prop_assert!(!reason.contains(['\n', '\r']), "reason on more than one line: {reason:?}");
        proptest::prop_assert!(reason.chars().count() <= 300, "reason too long: {} characters", reason.chars().count());
        Ok(())
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

        /// Any status, any headers (odd `Retry-After` values above all),
        /// any body bytes: a classification, never a panic, and reasons on one
        /// short line.
        #[test]
        fn any_answer_is_classified_with_a_one_line_reason(
            code in 100u16..1000,
            retry_after in proptest::option::of(proptest::collection::vec(proptest::num::u8::ANY, 0..40)),
            retry_after_text in proptest::option::of("[0-9 +-.eE]{0,30}|[a-zA-Z, :0-9]{0,40}"),
            other in proptest::collection::vec(("[a-z][a-z0-9-]{0,20}", proptest::collection::vec(proptest::num::u8::ANY, 0..40)), 0..4),
            body in proptest::collection::vec(proptest::num::u8::ANY, 0..2048),
            success in proptest::collection::vec(100u16..1000, 0..3),
        ) {
            let status = StatusCode::from_u16(code).expect("100..1000 is a status");
            let mut headers = HeaderMap::new();
            for (name, value) in other {
                if let (Ok(name), Ok(value)) = (hyper::header::HeaderName::try_from(name), hyper::header::HeaderValue::from_bytes(&value)) {
                    headers.append(name, value);
                }
            }
            for value in retry_after.into_iter().chain(retry_after_text.map(String::into_bytes)) {
                if let Ok(value) = hyper::header::HeaderValue::from_bytes(&value) {
                    headers.append(RETRY_AFTER, value);
                }
            }
            match classify(status, &headers, &body, &success) {
                Attempt::Acknowledged => {
                    let listed = if success.is_empty() { status.is_success() } else { success.contains(&code) };
                    proptest::prop_assert!(listed, "HTTP {code} acknowledged with success {success:?}");
                }
                Attempt::TooLarge => proptest::prop_assert_eq!(code, 413),
                Attempt::Retry { reason, after } => {
                    one_line(&reason)?;
                    proptest::prop_assert!(code == 408 || code == 429 || (code >= 500 && code != 501), "HTTP {code} retried");
                    if code == 408 {
                        proptest::prop_assert!(after.is_none());
                    }
                }
                Attempt::Refused { reason } => one_line(&reason)?,
            }
        }
    }

    #[test]
    fn retry_after_and_body_excerpts_are_kept() {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, "7".parse().expect("header"));
        assert_eq!(
            classify(StatusCode::TOO_MANY_REQUESTS, &headers, b"", &[]),
            Attempt::Retry { reason: "HTTP 429 Too Many Requests".into(), after: Some(Duration::from_secs(7)) }
        );
        let refused = classify(StatusCode::BAD_REQUEST, &HeaderMap::new(), b"bad\nevent  here", &[]);
        assert_eq!(refused, Attempt::Refused { reason: "HTTP 400 Bad Request: bad event here".into() });
    }
}
