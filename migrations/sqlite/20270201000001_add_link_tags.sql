-- MoneyKit's link_tags as reconciliation (GET /links/{id}) and discovery last
-- saw them, a JSON array of strings: they select the link's profile.
ALTER TABLE links ADD COLUMN tags TEXT;
