//! The one place that decides what a gRPC status from Teleport means for the
//! call that got it, as `sink/http/classify.rs` does for HTTP answers.
//!
//! Every retry loop of the Teleport source (audit log, session recordings,
//! locks) asks [`classify`] and acts on the [`Class`]: a transient failure is
//! asked again with backoff; a failure that is permanent for *this request*
//! is recovered from by asking something else (a fresh search, a recording
//! from its start, the next chunk, with a dead letter for what vanished),
//! except a lock, which is given up with an ERROR line (as is one still
//! failing after a few transient failures); an authorization failure is asked again slowly, with one ERROR line a
//! minute ([`ErrorEvery`]) so that the operator sees it without a flood.

use std::time::Duration;
use tokio::time::Instant;
use tonic::Code;

/// How often an unresolved authorization (or unrecoverable) failure is
/// logged at ERROR; attempts in between log at DEBUG.
pub const ERROR_EVERY: Duration = Duration::from_secs(60);

/// The pause between attempts once Teleport refused the identity: a role or
/// certificate is fixed by a person, not by hammering the Auth Service.
pub const SLOW_RETRY: Duration = Duration::from_secs(15);

/// What a status means for the request that got it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// The server or the network had a moment: ask again, with backoff.
    Transient,
    /// This request can never succeed as it is (a stale page key or export
    /// cursor, a chunk or recording that is gone): ask for something else.
    Permanent,
    /// Teleport refused the identity or its roles: ask again slowly and tell
    /// the operator once a minute.
    Unauthorized,
}

/// Classifies a status code.
///
/// Decisions beyond the obvious ones:
/// - `Internal` and `Unknown` are transient. Teleport turns backend trouble
///   (a DynamoDB throttle, a lost etcd or Postgres connection) into
///   `Internal`, and tonic reports broken connections and HTTP/2 protocol
///   errors as `Unknown` or `Internal`; none of these is about the request,
///   and treating them as permanent would skip audit events that exist.
/// - `Cancelled` is transient: the call was cut (a connection closed under
///   it), not refused.
/// - `FailedPrecondition`, `OutOfRange`, `InvalidArgument`, `NotFound`,
///   `AlreadyExists`, `DataLoss` and `Unimplemented` are permanent for the
///   request: asking the same again gets the same answer. Teleport answers
///   `FailedPrecondition` when a cursor or key no longer matches the
///   backend's state, `OutOfRange` for an index past a stream's end.
/// - `Ok` never reaches here as an error; it is read as transient so that a
///   confused peer is asked again rather than skipped.
pub fn classify(code: Code) -> Class {
    match code {
        Code::Unavailable
        | Code::DeadlineExceeded
        | Code::ResourceExhausted
        | Code::Aborted
        | Code::Internal
        | Code::Unknown
        | Code::Cancelled
        | Code::Ok => Class::Transient,
        Code::InvalidArgument
        | Code::NotFound
        | Code::OutOfRange
        | Code::FailedPrecondition
        | Code::AlreadyExists
        | Code::DataLoss
        | Code::Unimplemented => Class::Permanent,
        Code::Unauthenticated | Code::PermissionDenied => Class::Unauthorized,
    }
}

/// Lets one ERROR line through per [`ERROR_EVERY`]; the rest go to DEBUG.
#[derive(Debug, Default, Clone)]
pub struct ErrorEvery {
    last: Option<Instant>,
}

impl ErrorEvery {
    /// Whether a line logged now should be an ERROR (the first, and then
    /// one a minute).
    pub fn due(&mut self) -> bool {
        self.due_at(Instant::now())
    }

    fn due_at(&mut self, now: Instant) -> bool {
        match self.last {
            Some(last) if now.saturating_duration_since(last) < ERROR_EVERY => false,
            _ => {
                self.last = Some(now);
                true
            }
        }
    }

    /// The failure is over: the next one is logged at once.
    pub fn reset(&mut self) {
        self.last = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_its_class() {
        use Class::*;
        let table = [
            (Code::Ok, Transient),
            (Code::Cancelled, Transient),
            (Code::Unknown, Transient),
            (Code::InvalidArgument, Permanent),
            (Code::DeadlineExceeded, Transient),
            (Code::NotFound, Permanent),
            (Code::AlreadyExists, Permanent),
            (Code::PermissionDenied, Unauthorized),
            (Code::ResourceExhausted, Transient),
            (Code::FailedPrecondition, Permanent),
            (Code::Aborted, Transient),
            (Code::OutOfRange, Permanent),
            (Code::Unimplemented, Permanent),
            (Code::Internal, Transient),
            (Code::Unavailable, Transient),
            (Code::DataLoss, Permanent),
            (Code::Unauthenticated, Unauthorized),
        ];
        assert_eq!(table.len(), 17, "all seventeen gRPC codes");
        for (code, class) in table {
            assert_eq!(classify(code), class, "{code:?}");
        }
    }

    #[test]
    fn one_error_line_a_minute() {
        let mut every = ErrorEvery::default();
        let start = Instant::now();
        let at = |seconds: u64| start + Duration::from_secs(seconds);
        let due: Vec<bool> = [0, 1, 30, 59, 60, 61, 119, 121].iter().map(|&s| every.due_at(at(s))).collect();
        assert_eq!(due, [true, false, false, false, true, false, false, true]);
        every.reset();
        assert!(every.due_at(at(122)), "after a success the next failure is logged at once");
    }
}
