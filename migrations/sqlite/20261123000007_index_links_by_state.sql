-- Fleet pages and the linkfresh_links{state} gauge count and list links by state.
CREATE INDEX links_by_state ON links (state);
