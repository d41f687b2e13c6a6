"""punchclock's Dramatiq middleware, one concept per module; ``app/actors.py`` stacks them in order."""
