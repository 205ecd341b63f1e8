-- A row's insert is marked sent just before a push sends it. When the answer is lost after Salesforce
-- created the record, the pull that brings the record finds the row by its warehouse key among the rows
-- whose insert was sent (and only those), and settles the changes that were sent: they are in Salesforce.
ALTER TABLE sfsync.outbox ADD COLUMN sent_at timestamptz;
