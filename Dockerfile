# The punchclock image: workers (dramatiq app.actors), the clock (periodiq app.actors) and the CLI (punchclock).
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md schedules.py ./
COPY app ./app
COPY actors ./actors
# the docs knowledge base of schedules.py reads them (Folder("docs"), relative to the working directory)
COPY docs ./docs
RUN pip install . \
    && useradd --create-home --uid 1000 punchclock \
    && chown punchclock /app
USER punchclock

CMD ["dramatiq", "app.actors", "--processes", "2", "--threads", "8"]
