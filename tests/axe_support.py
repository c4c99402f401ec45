"""axe-core in the browser tests: the vendored tests/vendor/axe-core/axe.min.js (from npm,
MPL-2.0), evaluated into the page by Playwright. Nothing is downloaded. Evaluation through the
DevTools protocol is not subject to the page's Content-Security-Policy, so the app's strict
policy stays as it is for the test."""

from __future__ import annotations

from pathlib import Path
from typing import Any

AXE_JS = (Path(__file__).resolve().parent / "vendor" / "axe-core" / "axe.min.js").read_text(encoding="utf-8")

# Every default rule, and the one the issue named that axe ships disabled as experimental: a
# control's accessible name must contain its visible text (speech users say what they see).
RUN_AXE_JS = """async () => {
  const result = await axe.run(document, {
    resultTypes: ['violations'],
    rules: { 'label-content-name-mismatch': { enabled: true } },
  });
  return result.violations.map(v => ({
    id: v.id,
    impact: v.impact,
    nodes: v.nodes.length,
    targets: v.nodes.slice(0, 3).map(n => n.target.join(' ')),
    help: v.help,
  }));
}"""

SEVERE = ("serious", "critical")


def axe_violations(page: Any) -> list[dict[str, Any]]:
    """axe's violations on the page as it is now (one dict per rule, with the node count)."""
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        page.evaluate(AXE_JS)
    return list(page.evaluate(RUN_AXE_JS))


def severe(violations: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [v for v in violations if v["impact"] in SEVERE]
