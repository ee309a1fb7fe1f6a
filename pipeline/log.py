"""One logger factory for the CLI and library code (Dagster steps use their step's `context.log`).

Two handlers, both scrubbing the FMP key (and any `apikey=...`) from every record:
- the file `<data_dir>/logs/pipeline-YYYY-MM-DD.log` takes INFO and above, always: it is the record to read after
  the fact (which command ran, a run's phases, every failure with its cause), so a failed run leaves its failure
  there even when the console scrolled away;
- the console (stderr) takes WARNING and above, INFO with `ENV=DEV`: the commands print their own report on
  stdout, so the console only adds what needs attention.
A record logged with `extra=FILE_ONLY` goes to the file only (a line the command already printed).

A logs folder that cannot be written (a read-only data folder, a full disk) never stops a command: the file
handler is dropped with one warning on the console, and the command goes on console-only. Calling `get_logger`
again never adds handlers.
"""

from __future__ import annotations

import datetime as dt
import logging
import sys

from pipeline.redact import redact
from pipeline.settings import Settings, get_settings
from pipeline.storage_errors import describe_os_error

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
FILE_ONLY = {"console": False}  # `log.info(line, extra=FILE_ONLY)`: already printed, kept in the file


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


class _LogFile(logging.FileHandler):
    """The dated log file. A write that fails (the disk filled up) drops the handler with one console warning,
    instead of logging's "--- Logging error ---" traceback on every later record."""

    def __init__(self, path: str, logger: logging.Logger) -> None:
        super().__init__(path, encoding="utf-8")
        self._logger = logger

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 - logging's name
        error = sys.exc_info()[1]
        if not isinstance(error, OSError):
            super().handleError(record)
            return
        self._logger.removeHandler(self)
        try:
            self.close()
        except OSError:
            pass
        _warn_console_only(self.baseFilename, error)


def _warn_console_only(path: object, error: OSError) -> None:
    """The one warning when the log file cannot be written; a plain line like the CLI's other messages."""
    print(
        f"pipeline: warning: cannot write the log file {path}: {describe_os_error(error)}; logging to the console only",
        file=sys.stderr,
    )


def get_logger(name: str = "pipeline", settings: Settings | None = None) -> logging.Logger:
    """The named logger, configured once for these settings (a new data folder or day replaces the handlers)."""
    settings = settings or get_settings()
    logger = logging.getLogger(name)
    logger.setLevel(logging.INFO)
    log_file = settings.logs_dir / f"pipeline-{dt.date.today().isoformat()}.log"
    config = (str(log_file), settings.fmp_api_key, settings.env)
    ours = [h for h in logger.handlers if getattr(h, "_pipeline_config", None) is not None]
    if ours and all(h._pipeline_config == config for h in ours):  # type: ignore[attr-defined]
        return logger
    for handler in ours:
        logger.removeHandler(handler)
        handler.close()
    scrubber = KeyScrubber(settings.fmp_api_key)
    console = logging.StreamHandler(sys.stderr)
    console.addFilter(lambda record: getattr(record, "console", True))
    console.setLevel(logging.INFO if settings.env == "DEV" else logging.WARNING)
    handlers: list[logging.Handler] = [console]
    try:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(_LogFile(str(log_file), logger))
    except OSError as exc:
        _warn_console_only(log_file, exc)
    for handler in handlers:
        handler.setFormatter(logging.Formatter(FORMAT))
        handler.addFilter(scrubber)
        handler._pipeline_config = config  # type: ignore[attr-defined]
        logger.addHandler(handler)
    return logger
