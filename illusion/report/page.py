"""The self-contained page shell that report.html and sweep.html share.

Nothing loads from anywhere: the page's own style and script are inline and allowed by hash in
its Content-Security-Policy, so even text that escaped its escaping could not run.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Sequence

from .plots import esc



def _csp_hash(source: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(source.encode("utf-8")).digest()).decode() + "'"


def content_security_policy(css: str, script: str | None) -> str:
    """Nothing loads from anywhere; only the page's own style and script (by hash) may run.

    Hashes instead of 'unsafe-inline': even if some text escaped its escaping, an injected
    <script> or onerror= handler would be refused by the browser. ``script=None``: a page without one.
    """
    scripts = f"; script-src {_csp_hash(script)}" if script else ""
    return (f"default-src 'none'; style-src {_csp_hash(css)}{scripts}; img-src data:; "
            "base-uri 'none'; form-action 'none'")


def html_page(title: str, body: Sequence[str], *, css: str, script: str | None) -> str:
    """A self-contained page: inline style and script allowed by hash, nothing external."""
    return "".join([
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">",
        f"<meta http-equiv=\"Content-Security-Policy\" content=\"{esc(content_security_policy(css, script))}\">",
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">",
        "<meta name=\"referrer\" content=\"no-referrer\">",
        f"<title>{esc(title)}</title><link rel=\"icon\" href=\"data:,\">",
        f"<style>{css}</style></head><body>", *body,
        f"<script>{script}</script>" if script else "", "</body></html>\n",
    ])
