INSERT INTO sfsync.api_usage AS u (org, used, max, seen_at) VALUES (%(org)s, %(used)s, %(max)s, %(seen_at)s)
ON CONFLICT (org) DO UPDATE SET used = excluded.used, max = excluded.max, seen_at = excluded.seen_at
WHERE u.seen_at <= excluded.seen_at
