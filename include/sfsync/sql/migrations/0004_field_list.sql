-- The fields the last run read (API names, as the integration user could see them). A run asks for its
-- delta with this list and the object's describe in one composite call, so an idle run costs one API call.
ALTER TABLE sfsync.sync_state ADD COLUMN fields text[];
