-- A JSON settings document per account (MariaDB checks it with JSON_VALID).
ALTER TABLE accounts ADD COLUMN settings JSON NOT NULL DEFAULT ('{"theme": "light"}');
