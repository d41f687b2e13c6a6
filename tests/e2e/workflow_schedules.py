"""The schedules module of the workflow end-to-end tests: no code schedules, one Dify app whose base URL the
test passes in the environment (its fake server's port is only known at run time)."""

import os

from app.ai.dify import DifyApp

SCHEDULES: list[object] = []
DIFY_APPS = [DifyApp("weather", os.environ.get("TEST_DIFY_BASE_URL", "http://127.0.0.1:9"), "DIFY_WEATHER_KEY")]
