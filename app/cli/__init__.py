"""The punchclock command line."""
