"""Where a knowledge base's documents come from: each kind of source lists what it holds and fetches only what
changed since the last reindex (``base`` says how; ``folder``, ``http`` and ``s3`` are the kinds)."""
