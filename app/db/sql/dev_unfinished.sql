-- `punchclock dev`, once stopped (app/dev_handover.py): the runs it accepted and did not finish (in its in-memory
-- queues, waiting for a lease, or running past the stop wait), which the next dev takes over.
SELECT count(*) FROM runs WHERE state IN ('scheduled', 'enqueued', 'retrying', 'running')
