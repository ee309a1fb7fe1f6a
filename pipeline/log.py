"""One logger factory for the CLI and library code (Dagster steps use their step's `context.log`).

Level INFO when `ENV=DEV`, WARNING otherwise; a console handler plus `<data_dir>/logs/pipeline-YYYY-MM-DD.log`;
both handlers scrub the FMP key (and any `apikey=...`) from every record. Calling it again never adds handlers.
"""

from __future__ import annotations

import datetime as dt
import logging
import sys

from pipeline.redact import redact
from pipeline.settings import Settings, get_settings

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class KeyScrubber(logging.Filter):
    """Replaces the API key, and any `apikey=<value>`, in the message and exception text of every record."""

    def __init__(self, key: str | None) -> None:
        super().__init__()
        self.key = key

    def scrub(self, text: str) -> str:
        return redact(text, self.key)

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            record.msg, record.args = self.scrub(record.getMessage()), None
        except Exception:  # a bad format string: let the handler report it, as logging normally does
            return True
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.scrub(record.exc_text)
        if record.stack_info:
            record.stack_info = self.scrub(record.stack_info)
        return True


def get_logger(name: str = "pipeline", settings: Settings | None = None) -> logging.Logger:
    """The named logger, configured once for these settings (a new data folder or day replaces the handlers)."""
    settings = settings or get_settings()
    logger = logging.getLogger(name)
    logger.setLevel(logging.INFO if settings.env == "DEV" else logging.WARNING)
    log_file = settings.logs_dir / f"pipeline-{dt.date.today().isoformat()}.log"
    ours = [h for h in logger.handlers if getattr(h, "_pipeline_config", None) is not None]
    if ours and all(h._pipeline_config == (str(log_file), settings.fmp_api_key) for h in ours):  # type: ignore[attr-defined]
        return logger
    for handler in ours:
        logger.removeHandler(handler)
        handler.close()
    log_file.parent.mkdir(parents=True, exist_ok=True)
    scrubber = KeyScrubber(settings.fmp_api_key)
    for handler in (logging.StreamHandler(sys.stderr), logging.FileHandler(log_file, encoding="utf-8")):
        handler.setFormatter(logging.Formatter(FORMAT))
        handler.addFilter(scrubber)
        handler._pipeline_config = (str(log_file), settings.fmp_api_key)  # type: ignore[attr-defined]
        logger.addHandler(handler)
    return logger
