-- The stable hash a link's partition derives from (src/policy/partitions.rs:
-- the first four bytes of SHA-256 of the id, big-endian, unsigned), computed
-- by PostgreSQL itself so that a replica reads only its partitions' links.
-- Link ids never contain a backslash (LinkId::parse), so id::bytea is the
-- id's bytes in the database encoding (UTF-8).
ALTER TABLE links ADD COLUMN part_hash BIGINT GENERATED ALWAYS AS
    (('x' || encode(substring(sha256(id::bytea) FROM 1 FOR 4), 'hex'))::bit(32)::bigint) STORED;
