-- A global sequence bumped by every operator/API change; the new value is
-- stamped into links.change_seq so a running daemon can poll
-- "changes since N" cheaply. One row, updated in the same transaction as the
-- change (its row lock orders concurrent writers on PostgreSQL).
CREATE TABLE change_counter (
    id  INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    seq BIGINT  NOT NULL
);
INSERT INTO change_counter (id, seq) VALUES (1, 0);
