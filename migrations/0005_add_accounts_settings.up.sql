-- A JSON settings document per account, valid JSON by construction.
ALTER TABLE accounts ADD COLUMN settings TEXT NOT NULL DEFAULT '{"theme": "light"}'
    CHECK (json_valid(settings));
