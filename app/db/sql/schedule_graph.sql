SELECT name, after FROM schedules
