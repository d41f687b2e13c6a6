"""The actors punchclock runs. ``app/actors.py`` imports this package after the broker is set up.

Add yours as modules here and import them below, so the wiring stays in one visible place.
"""

from actors import probe

__all__ = ["probe"]
