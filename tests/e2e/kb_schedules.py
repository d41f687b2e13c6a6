"""The schedules module of the knowledge base end-to-end test: a ``docs`` knowledge base over a folder the test
passes in the environment (its tmp_path is only known at run time), and its reindex schedule."""

import os

from app.kb.definition import Folder, KnowledgeBase
from app.schedule import Schedule

KNOWLEDGE_BASES = [KnowledgeBase("docs", sources=[Folder(os.environ.get("TEST_KB_FOLDER", "docs"), "**/*.md")])]
SCHEDULES = [Schedule(name="docs-reindex", actor="reindex", cron="0 3 * * *", args={"kb": "docs"})]
