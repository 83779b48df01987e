-- Where a position came from, by source name, for `ferry status`: `own`
-- (ferry started it), `migrated` (moved from the key `origin`, a Teleport
-- position an older ferry stored under the address), or `imported` (taken
-- over from the event handler's state folder `origin`). A Teleport position
-- with a row here is keyed by cluster name; one without is an older
-- ferry's, keyed by address.
CREATE TABLE position_origins (
    source TEXT PRIMARY KEY NOT NULL,
    kind   TEXT NOT NULL,
    origin TEXT,
    at     TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
