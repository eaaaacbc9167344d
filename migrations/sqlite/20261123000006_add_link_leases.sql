-- Room for several replicas on one database: a replica will claim due links
-- for a short lease. Unused for now; nullable so nothing has to fill them.
ALTER TABLE links ADD COLUMN lease_owner TEXT;
ALTER TABLE links ADD COLUMN lease_until BIGINT;
