"""One function that removes the FMP API key from any text: logs, exception messages, recorded URLs.

FMP takes the key as a query parameter, so it leaks through every URL a library prints. Both the key's own
value (raw and URL-encoded, when known) and any `apikey=<value>` are replaced.
"""

from __future__ import annotations

import re
from urllib.parse import quote

_APIKEY_PARAM = re.compile(r"(apikey=)[^&\s\"'<>]+", re.IGNORECASE)
MASK = "***"


def redact(text: str, key: str | None = None) -> str:
    """`text` without the key (raw or URL-encoded) and without any `apikey=...` value."""
    if key:
        for form in {key, quote(key, safe=""), quote(key)}:
            text = text.replace(form, MASK)
    return _APIKEY_PARAM.sub(rf"\g<1>{MASK}", text)
