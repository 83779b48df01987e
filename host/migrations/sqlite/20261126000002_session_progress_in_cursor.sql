-- Session progress lives in the Teleport source's cursor document (table
-- `cursors`), so that it commits in the same transaction as the audit log
-- position and the dead letters of the batch it ends. The separate table
-- planned for it is not used.
DROP TABLE sessions;
