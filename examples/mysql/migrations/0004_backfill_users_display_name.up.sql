-- Step 2 of 3: fill the new column from the part of the email before the @.
UPDATE users
SET display_name = SUBSTRING_INDEX(email, '@', 1)
WHERE display_name IS NULL;
