"""``python -m s3_scheduler``: the ``s3-scheduler`` command."""

from .cli import entry_point

if __name__ == "__main__":
    entry_point()
