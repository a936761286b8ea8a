"""A start refused for its options is logged as one line, not as a traceback.

JupyterHub (5.3 and 6.x) logs every exception of a failed start with its traceback, also the
``HTTPError(400)`` a spawner raises to refuse invalid ``user_options``, and offers no hook where
a refusal is logged otherwise:

* ``Spawner._run_apply_user_options`` logs ``"Exception applying user_options for ..."`` with
  ``log.exception`` for anything ``apply_user_options`` raises, ``HTTPError`` included;
* the spawn form and spawn links (``SpawnHandler``) log ``"Failed to spawn single-user server
  with form"`` with ``exc_info=True`` for anything the spawn raises within a second;
* JupyterHub 5.3's ``User.spawn`` also logs ``"Unhandled error starting ..."`` with
  ``log.exception`` for an ``HTTPError`` from ``Spawner.start`` (6.x logs one line there), and
  its spawn form logs ``"Error starting server ..."`` with ``log.exception`` outside of any
  ``except`` block (a "traceback" reading ``NoneType: None``).

Refusals are therefore :class:`OptionsRefused` (``ProfileOptionsError``, HPCSpawner's invalid
options), and the hub's logger gets a filter, :class:`RefusalLogFilter`, that touches only
records carrying one: their traceback is dropped; the records that exist only to carry it (their
message does not say why the start was refused) go to the debug level. What stays is JupyterHub's
own line naming the reason (``Error starting alice's server: HTTP 400: ... (Invalid option
'cpus': must be at most 4 (got 9))``), besides tornado's warning line of the HTTP request.
"""

from __future__ import annotations

import logging
from typing import Any

from tornado import web
from tornado.log import app_log
from traitlets.log import get_logger

__all__ = ["OptionsRefused", "RefusalLogFilter", "quiet_refusals"]


class OptionsRefused(web.HTTPError):
    """HTTP 400: a start refused for its options (the user's input, not a fault of the hub).

    Making one puts :class:`RefusalLogFilter` on the hub's loggers (once)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # the hub's logger (spawners, handlers) and tornado's, which JupyterHub's User logs to
        # (a logger's filters do not see the records its children propagate to it)
        quiet_refusals(get_logger())
        quiet_refusals(app_log)

    @property
    def summary(self) -> str:
        """The reason as logged (the formatted ``log_message``)."""
        message = str(self.log_message or "")
        return message % self.args if self.args else message


class RefusalLogFilter(logging.Filter):
    """No traceback for a record whose exception is an :class:`OptionsRefused`; such a record
    that does not state the reason is lowered to debug (dropped when debug is off). A record
    logged with ``exc_info`` but no exception loses that empty traceback."""

    def __init__(self, logger: logging.Logger) -> None:
        super().__init__()
        self.logger = logger

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if record.exc_info and exc is None:
            # log.exception outside an except block (JupyterHub 5.3's spawn form does so after
            # a refused start): the "traceback" would be "NoneType: None"
            record.exc_info = None
            return True
        if not isinstance(exc, OptionsRefused):
            return True
        record.exc_info = None
        record.exc_text = None
        try:
            states_reason = exc.summary in record.getMessage()
        except (TypeError, ValueError):
            states_reason = False
        if states_reason:
            return True
        record.levelno, record.levelname = logging.DEBUG, logging.getLevelName(logging.DEBUG)
        return self.logger.isEnabledFor(logging.DEBUG)


def quiet_refusals(logger: logging.Logger | logging.LoggerAdapter[Any]) -> None:
    """Put :class:`RefusalLogFilter` on ``logger`` unless it has one."""
    target = logger.logger if isinstance(logger, logging.LoggerAdapter) else logger
    if not any(isinstance(f, RefusalLogFilter) for f in target.filters):
        target.addFilter(RefusalLogFilter(target))
