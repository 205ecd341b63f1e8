-- One name for one idea: the point up to which the warehouse holds every change is the watermark, the
-- object's (sync_state) and the one a run moves it to when merged (sync_runs).
ALTER TABLE sfsync.sync_state RENAME COLUMN high_water TO watermark;
ALTER TABLE sfsync.sync_state RENAME COLUMN high_water_source TO watermark_source;
ALTER TABLE sfsync.sync_runs RENAME COLUMN window_end TO watermark;
