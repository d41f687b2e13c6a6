SELECT punchclock_kb_drop_generation($1)
