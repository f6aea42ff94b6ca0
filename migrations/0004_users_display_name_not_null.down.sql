CREATE TABLE users_old (
    id INTEGER PRIMARY KEY,
    account_id INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    email TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP,
    display_name TEXT
);
INSERT INTO users_old (id, account_id, email, created_at, display_name)
SELECT id, account_id, email, created_at, display_name FROM users;
DROP TABLE users;
ALTER TABLE users_old RENAME TO users;
CREATE INDEX users_account_id ON users (account_id);
