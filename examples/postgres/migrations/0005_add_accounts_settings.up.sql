-- A JSON settings document per account: jsonb is valid JSON by its type.
ALTER TABLE accounts ADD COLUMN settings JSONB NOT NULL DEFAULT '{"theme": "light"}';
