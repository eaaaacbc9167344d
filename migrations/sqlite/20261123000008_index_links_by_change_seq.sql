-- changes_since(N) is polled about once a second; it must not scan all links.
CREATE INDEX links_by_change_seq ON links (change_seq);
