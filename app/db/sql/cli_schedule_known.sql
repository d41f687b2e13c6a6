-- `runs cancel --schedule`: $1 a name: whether a schedule has it, or runs kept it after their schedule's deletion.
SELECT EXISTS (SELECT 1 FROM schedules WHERE name = $1) OR EXISTS (SELECT 1 FROM runs WHERE schedule_name = $1)
