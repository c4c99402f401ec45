"""The JSON API endpoints the pages' scripts call (routes owned by app.web.api)."""

from __future__ import annotations

UPLOAD = "/api/v1/studies"


# The worklist page's own feed (app.web.pages.worklist_pages): every filter, the page and the total.
WORKLIST_FEED = "/worklist/data"
