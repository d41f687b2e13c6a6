"""The actors punchclock runs. ``app/actors.py`` imports this package after the broker is set up.

Add yours as modules here and import them below, so the wiring stays in one visible place.
"""

from actors import daily_brief, probe

# The workflows the run_workflow actor can run, by name (app/actors.py hands this list to it).
WORKFLOWS = [daily_brief.daily_brief]

__all__ = ["WORKFLOWS", "daily_brief", "probe"]
