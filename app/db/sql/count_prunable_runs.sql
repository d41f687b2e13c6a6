-- `runs prune --dry-run`: how many runs prune_runs.sql would delete for cutoff $1, with no batch limit. The same
-- conditions as prune_runs.sql (keep the two in step; tests/integration/test_retention.py compares them).
SELECT count(*) FROM runs r
WHERE date_bin('1 hour', r.created_at, TIMESTAMPTZ '2000-01-01 00:00:00+00')
      <= date_bin('1 hour', $1::timestamptz, TIMESTAMPTZ '2000-01-01 00:00:00+00')
  AND r.finished_at < $1::timestamptz
  AND r.state IN ('succeeded', 'failed', 'timed_out', 'cancelled', 'skipped', 'missed')
  AND NOT r.followups_due
  AND NOT EXISTS (SELECT 1 FROM runs b WHERE b.blocked_by = r.id OFFSET 0)
  AND NOT EXISTS (SELECT 1 FROM run_locks l WHERE l.run_id = r.id OFFSET 0)
  AND NOT EXISTS (SELECT 1 FROM run_locks l WHERE l.waiting_run_id = r.id OFFSET 0)
  AND (r.schedule_id IS NULL OR r.trigger NOT IN ('cron', 'dependency') OR r.state IN ('missed', 'skipped')
       OR EXISTS (SELECT 1 FROM runs n
                  WHERE n.schedule_id = r.schedule_id AND n.trigger IN ('cron', 'dependency')
                    AND n.scheduled_for > r.scheduled_for AND n.state NOT IN ('missed', 'skipped')))
