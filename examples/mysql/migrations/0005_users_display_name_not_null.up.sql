-- Step 3 of 3: NOT NULL.
ALTER TABLE users MODIFY display_name VARCHAR(255) NOT NULL;
