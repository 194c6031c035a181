"""The audit web view (`moltis-ledger serve`, or mounted in a gateway): needs the `web`
extra (Starlette, uvicorn, Jinja2). Sits at the top like the CLI: it imports the
library through `ledger.web.library`; nothing below imports it."""

from __future__ import annotations

from ledger.web.app import create_app
from ledger.web.auth import Auth, Principal

__all__ = ["Auth", "Principal", "create_app"]
