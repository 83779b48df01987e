-- The plugin chain ferry last ran, written by `ferry start` once its
-- pipeline is built and by every reload that took: each plugin by name, in
-- chain order, with its component file and the settings file it was read
-- with (NULL: none). A start, check or replay whose chain would go without
-- one of them, while ferry.toml does not take it out, is refused: a plugin
-- file gone missing while ferry was stopped must not let events out
-- unredacted.
CREATE TABLE plugin_chain (
    position INTEGER PRIMARY KEY NOT NULL,
    name     TEXT NOT NULL,
    wasm     TEXT NOT NULL,
    settings TEXT
);
