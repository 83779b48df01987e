-- The time of the newest event among the batches each cursor has moved
-- past (RFC 3339, UTC, nanoseconds, so that text order is time order).
-- It is written in the same transaction as the cursor, so it never names
-- an event that was not acknowledged (or dead-lettered) yet: `ferry status`
-- shows it and the lag behind it. NULL until a batch with a readable event
-- time is committed.
ALTER TABLE cursors ADD COLUMN newest_event_time TEXT;
