ALTER TABLE accounts DROP COLUMN settings;
