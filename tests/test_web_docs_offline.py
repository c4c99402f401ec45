"""/docs and /redoc render in Chromium with every host but the app blocked (an air-gapped network)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from web_browser_support import CHROMIUM, DEMO_MODEL_DIR, chromium_page, live_server

pytestmark = [pytest.mark.browser, pytest.mark.slow]

if not CHROMIUM.is_file():
    pytest.skip(
        f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)", allow_module_level=True
    )


def _block_all_but(page: Any, origin: str) -> list[str]:
    """Abort every request that does not go to ``origin``; return the list of those attempted."""
    blocked: list[str] = []

    def handle(route: Any) -> None:
        url = route.request.url
        if url.startswith((origin + "/", "data:", "blob:")):
            route.continue_()
        else:
            blocked.append(url)
            route.abort()

    page.route("**/*", handle)
    return blocked


def test_swagger_ui_and_redoc_work_without_internet(tmp_path: Path) -> None:
    with live_server(tmp_path / "server", DEMO_MODEL_DIR) as server, chromium_page() as page:
        blocked = _block_all_but(page, server.url)
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))

        page.goto(server.url + "/docs")
        page.wait_for_selector(".swagger-ui .information-container .title")
        assert "fetalcns" in page.inner_text(".swagger-ui .information-container .title")
        page.wait_for_selector(".opblock-summary-path")
        paths = page.locator(".opblock-summary-path").all_inner_texts()
        assert any(p.startswith("/api/v1/studies") for p in paths), paths
        assert page.evaluate("() => typeof SwaggerUIBundle") == "function"

        page.goto(server.url + "/redoc")
        page.wait_for_selector("h1:has-text('fetalcns')")
        # One rendered section per operation, from the app's own OpenAPI document.
        page.wait_for_selector("[data-section-id^='tag/studies/operation/']")
        assert page.locator("[data-section-id*='/operation/']").count() >= 5
        assert page.evaluate("() => typeof Redoc") == "object"

        assert blocked == [], f"the docs pages tried to reach other hosts: {blocked}"
        assert errors == []
