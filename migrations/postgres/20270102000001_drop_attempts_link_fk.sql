-- attempts.link_id no longer references links: the check cost one
-- `SELECT 1 FROM ONLY links ... FOR KEY SHARE` per inserted attempt (a
-- trigger per row, batched insert or not), on the hottest write of all.
-- The invariant it kept (an attempt names a stored link) still holds:
-- links are never deleted (a removal is the `removed` flag, so the
-- cascade never fired), and the transaction that inserts an attempt also
-- upserts its link's schedule rows, whose foreign key to links stays and
-- aborts the whole transaction for an unknown link; a claimed intent has
-- moreover read and locked the link row itself.
ALTER TABLE attempts DROP CONSTRAINT IF EXISTS attempts_link_id_fkey;
