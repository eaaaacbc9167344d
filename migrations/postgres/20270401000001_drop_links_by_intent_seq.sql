-- Issue 16: with partitioned ownership no replica polls `claims_since` (a
-- partition has one holder; see store::ownership), so the index only cost:
-- every lease taken and given back stamps `intent_seq`, and an indexed
-- column that changes makes the update non-HOT, writing a new entry into
-- every index of `links` (two per POST). `claims_since` still works, by a
-- scan, for tools and tests.
DROP INDEX links_by_intent_seq;
