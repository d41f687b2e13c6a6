-- Retention (app/retention.py): delete at most $2 final runs that finished before $1, with their attempts, steps
-- and notifications (ON DELETE CASCADE), created in the hour $3 or later ($3 NULL: any); returns how many runs
-- went and the latest hour they were created in (where the next batch starts, so that it does not walk again over
-- the index entries of the runs this one deleted, dead until vacuumed). One statement, its own short transaction:
-- it locks only the runs it deletes (SKIP LOCKED: concurrent prunes take disjoint runs); the stats change it
-- appends to run_stats_pending locks nothing. Oldest hour first, a schedule's runs together (the runs_prunable
-- index), so that change comes to a few rows per schedule and hour, not one per run.
--
-- Kept whatever their age:
--   * runs not final (in flight: never deleted), and runs whose follow-ups (notifications, dependents) are due;
--   * a run named in another run's blocked_by, until that run goes (`runs show` says "blocked by: run N");
--   * each schedule's newest run that executed for a cron or dependency instant: the clock's `after` gate reads
--     it (upstream_latest.sql) and so does a recovery notice, however long ago the upstream last ran.
-- Pruning old instants cannot fire them again: the clock fires only instants at or after a schedule's
-- next_fire_at, which only moves forward (app/clock.py, app/misfire.py), so runs_one_per_instant never needs a
-- pruned row to refuse a second run. (A dependency run's instant fires again only if an upstream run for that
-- same old instant succeeds afterwards, i.e. a backfill of the upstream reaching back past the retention.)
-- workflow_memory.run_id and a run's `upstream` args only record which run wrote them.
--
-- The plan must walk runs_prunable in order and stop at the batch: OFFSET 0 keeps each NOT EXISTS a per-run probe,
-- never an anti-join, which an underestimate of the old runs turns into sorting all of them for every batch.
WITH doomed AS (
    SELECT r.id, date_bin('1 hour', r.created_at, TIMESTAMPTZ '2000-01-01 00:00:00+00') AS hour FROM runs r
    WHERE date_bin('1 hour', r.created_at, TIMESTAMPTZ '2000-01-01 00:00:00+00')
          <= date_bin('1 hour', $1::timestamptz, TIMESTAMPTZ '2000-01-01 00:00:00+00')
      AND date_bin('1 hour', r.created_at, TIMESTAMPTZ '2000-01-01 00:00:00+00')
          >= coalesce($3::timestamptz, '-infinity')
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
    ORDER BY date_bin('1 hour', r.created_at, TIMESTAMPTZ '2000-01-01 00:00:00+00'), r.schedule_name, r.finished_at
    LIMIT $2
    FOR UPDATE OF r SKIP LOCKED
), gone AS (
    DELETE FROM runs USING doomed WHERE runs.id = doomed.id RETURNING doomed.hour
)
SELECT count(*) AS runs, max(hour) AS last_hour FROM gone
