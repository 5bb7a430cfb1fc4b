"""The README's screenshots of the MLflow UI, taken with headless Chromium.

Start the UI on a store `make run` made (`make ui`), then pass the address it printed:

    .venv/bin/python docs/screenshots.py 'http://127.0.0.1:5000/#/experiments/1?workflowType=machine_learning'

Writes docs/ui_runs.png (the runs table with every pipeline run's steps expanded) and
docs/ui_models.png (the experiment's logged models). Plain `chromium --screenshot` cannot click,
so this drives the browser through the Chrome DevTools Protocol, over the websocket client of
aiohttp (which MLflow installs).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import itertools
import json
import shutil
import subprocess
import tempfile
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import aiohttp

DOCS = Path(__file__).resolve().parent
# The "+" before a parent run's name, the assistant panel's close button, the sidebar's toggle.
EXPAND = "button[data-component-id$='runnamecellrenderer.tsx_46']"
CLOSE_PANEL = "button[aria-label='Close']"
TOGGLE_SIDEBAR = "button[aria-label='Toggle sidebar']"
# Scroll the model list to its Dataset column: the metric columns follow it, per dataset.
TO_METRICS = """(() => {
  const header = Array.from(document.querySelectorAll('.ag-header-viewport .ag-header-cell'))
    .find(cell => cell.textContent.trim() === 'Dataset');
  const bar = document.querySelector('.ag-body-horizontal-scroll-viewport');
  bar.scrollLeft = parseFloat(header.style.left);
  bar.dispatchEvent(new Event('scroll'));
})()"""


class Page:
    """One browser tab, driven over its DevTools websocket."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.ids = itertools.count(1)

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        id_ = next(self.ids)
        await self.ws.send_json({"id": id_, "method": method, "params": params})
        async for message in self.ws:
            reply = json.loads(message.data)
            if reply.get("id") == id_:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
        raise RuntimeError(f"{method}: the browser closed the connection")

    async def evaluate(self, expression: str) -> Any:
        result = await self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        return result.get("result", {}).get("value")

    async def wait_for(self, selector: str, timeout_s: float = 60.0) -> None:
        for _ in range(int(timeout_s * 2)):
            if await self.evaluate(f"document.querySelector({json.dumps(selector)}) !== null"):
                return
            await asyncio.sleep(0.5)
        raise TimeoutError(f"nothing matches {selector} after {timeout_s:.0f} s")

    async def screenshot(
        self, url: str, ready: str, path: Path, size: tuple[int, int], *scripts: str
    ) -> None:
        """Open `url`, wait for `ready` to appear, close the assistant, run `scripts`, and save
        the `size` (width, height) view as `path`."""
        width, height = size
        await self.send(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=False,
        )
        await self.send("Page.navigate", url=url)
        await self.wait_for(ready)
        await asyncio.sleep(2)  # the tables fill in after their first rows appear
        await self.evaluate(click(CLOSE_PANEL))
        for script in scripts:
            await self.evaluate(script)
            await asyncio.sleep(1)
        shot = await self.send("Page.captureScreenshot", format="png")
        path.write_bytes(base64.b64decode(shot["data"]))
        print(f"wrote {path}")


def click(selector: str) -> str:
    """A script that clicks everything `selector` matches."""
    return f"document.querySelectorAll({json.dumps(selector)}).forEach(element => element.click())"


def start_browser(profile: str) -> tuple[subprocess.Popen[str], str]:
    """Headless Chromium with its DevTools port open; (the process, the websocket of its tab)."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        raise SystemExit("error: screenshots: chromium not found; expected Debian's `chromium` package")
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", f"--user-data-dir={profile}"]
    flags.append("--remote-debugging-port=0")
    process = subprocess.Popen([browser, *flags, "about:blank"], stderr=subprocess.PIPE, text=True)
    assert process.stderr is not None
    for line in process.stderr:
        if "DevTools listening on" in line:
            port = urlparse(line.split("listening on", 1)[1].strip()).port
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list") as reply:
                tabs = json.load(reply)
            return process, next(t["webSocketDebuggerUrl"] for t in tabs if t["type"] == "page")
    raise SystemExit("error: screenshots: chromium did not open its DevTools port")


async def take(experiment_url: str, websocket: str) -> None:
    models_url = experiment_url.replace("?", "/models?", 1)
    async with aiohttp.ClientSession() as session, session.ws_connect(websocket, max_msg_size=0) as ws:
        page = Page(ws)
        await page.screenshot(experiment_url, EXPAND, DOCS / "ui_runs.png", (1600, 560), click(EXPAND))
        await page.screenshot(
            models_url,
            "a[href*='/models/m-']",
            DOCS / "ui_models.png",
            (2000, 300),
            click(TOGGLE_SIDEBAR),
            TO_METRICS,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", help="the experiment's address, as `make ui` prints it")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        process, websocket = start_browser(profile)
        try:
            asyncio.run(take(args.url, websocket))
        finally:
            process.terminate()
            process.wait()


if __name__ == "__main__":
    main()
