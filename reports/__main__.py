"""``python -m reports audit RUN_DIR`` / ``python -m reports bench`` (the same commands ``drill`` mounts)."""

from reports.cli import app

app()
