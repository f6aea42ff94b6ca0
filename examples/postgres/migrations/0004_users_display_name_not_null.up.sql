-- Step 3 of 3: NOT NULL. PostgreSQL alters the column in place (SQLite's demo rebuilds
-- the table).
ALTER TABLE users ALTER COLUMN display_name SET NOT NULL;
