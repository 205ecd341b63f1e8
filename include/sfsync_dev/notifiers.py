"""A notifier for the demo and the tests: it appends each alert's message to a file, one line each."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from airflow.sdk import BaseNotifier


class FileNotifier(BaseNotifier):
    template_fields = ("message",)

    def __init__(self, path: str, message: str = "{{ sfsync_alert }}") -> None:
        super().__init__()
        self.path, self.message = path, message

    def notify(self, context: Any) -> None:
        with Path(self.path).open("a") as out:
            out.write(f"{self.message}\n")
