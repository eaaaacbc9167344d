-- Open data.stale episodes: a (link, product) whose last refresh became
-- older than [events] stale_after. The sweep inserts the row and the
-- data.stale event in one transaction (the primary key makes it once per
-- episode, even with several replicas sweeping), and deletes it with the
-- data.fresh event when the product is refreshed again.
CREATE TABLE stale_episodes (
    link_id TEXT   NOT NULL,
    product TEXT   NOT NULL,
    since   BIGINT NOT NULL,
    PRIMARY KEY (link_id, product)
);
