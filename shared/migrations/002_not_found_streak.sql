-- Consecutive not_found answers per player: after a few the player counts as unranked
-- (kept, checked less often).
ALTER TABLE fetch_status ADD COLUMN not_found_streak integer NOT NULL DEFAULT 0;
