-- Slots: a deployment may run several instances at once, each holding the
-- lease of one slot (`active` for slot 0, `slot-1`, `slot-2`, ...) with an
-- epoch of its own. A write names its lease (`ferry.lease`) beside its
-- epoch, and the fence checks the epoch against that lease; a write that
-- names none is slot 0's, as every write was before slots.
ALTER TABLE instances ADD COLUMN lease TEXT;

CREATE OR REPLACE FUNCTION ferry_fence() RETURNS trigger LANGUAGE plpgsql AS $fence$
DECLARE
    mine    BIGINT := NULLIF(current_setting('ferry.epoch', true), '')::BIGINT;
    lease   TEXT := COALESCE(NULLIF(current_setting('ferry.lease', true), ''), 'active');
    current BIGINT;
    leader  TEXT;
BEGIN
    IF mine IS NOT NULL THEN
        SELECT epoch, holder INTO current, leader FROM leases WHERE name = lease FOR SHARE;
        IF current IS DISTINCT FROM mine THEN
            RAISE EXCEPTION 'ferry fence: a write with epoch % of lease % refused; % holds it with epoch %', mine, lease, leader, current
                USING ERRCODE = 'FE001';
        END IF;
    END IF;
    IF TG_OP = 'DELETE' THEN
        RETURN OLD;
    END IF;
    RETURN NEW;
END
$fence$;
