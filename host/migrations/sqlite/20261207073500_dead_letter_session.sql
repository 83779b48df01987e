-- Where a dead letter was going, so that a replay sends it back there: the
-- session recording it was streamed from (its events go to
-- `<session-url>.<session_id>.log`; a recording's `print` events carry no
-- `sid` of their own), and the sink the source meant it for when a plugin
-- gave up on it (a recording's own sink). NULL for an audit event, the
-- default sink, and letters older than these columns: those are replayed as
-- before (the `sid` read from the event, the default sink).
ALTER TABLE dead_letters ADD COLUMN session_id TEXT;
ALTER TABLE dead_letters ADD COLUMN sink TEXT;
