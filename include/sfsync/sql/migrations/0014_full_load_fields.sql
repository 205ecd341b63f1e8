-- The fields each slice copies, as the plan's describe listed them: copy tasks read them here instead of
-- describing the object again (slices planned before this migration have none, and describe it).
ALTER TABLE sfsync.full_load_slices ADD COLUMN fields text[];
