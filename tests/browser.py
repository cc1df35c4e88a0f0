"""Headless Chromium (Debian's package) for the UI tests: where it is, the flags that keep it off
the network, and a tab driven over the DevTools protocol (through `websockets`, which the
project already has through uvicorn), for pages a test must click and type in.
"""

from __future__ import annotations

import base64
import itertools
import json
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# Flags that keep Chromium off the (closed) network and quiet as root in a sandbox.
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
]
_KEYS = {"Enter": 13, "Tab": 9}


class BrowserTab:
    """One Chromium tab: navigate, run JavaScript, type, press keys, take screenshots."""

    def __init__(self, profile_dir: Path, window: tuple[int, int] = (1400, 1800), start_timeout_s: float = 30) -> None:
        from websockets.sync.client import connect

        profile_dir.mkdir(parents=True, exist_ok=True)
        active_port = profile_dir / "DevToolsActivePort"
        active_port.unlink(missing_ok=True)
        self.process = subprocess.Popen(
            [CHROMIUM, *CHROMIUM_FLAGS, f"--window-size={window[0]},{window[1]}", f"--user-data-dir={profile_dir}",
             "--remote-debugging-port=0", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + start_timeout_s
        while not active_port.is_file() or len(active_port.read_text().split()) < 2:
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise RuntimeError("chromium did not open its DevTools port")
            time.sleep(0.1)
        port = active_port.read_text().split()[0]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as answer:
            page = next(t for t in json.load(answer) if t["type"] == "page")
        self.socket = connect(page["webSocketDebuggerUrl"], max_size=None)
        self._ids = itertools.count(1)

    def send(self, method: str, **params) -> dict:
        message_id = next(self._ids)
        self.socket.send(json.dumps({"id": message_id, "method": method, "params": params}))
        while True:  # events arrive in between; only the answer to this call matters
            message = json.loads(self.socket.recv(timeout=60))
            if message.get("id") == message_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message["result"]

    def goto(self, url: str) -> None:
        self.send("Page.navigate", url=url)
        self.wait_for("document.readyState === 'complete'")

    def run(self, expression: str):
        """The value of a JavaScript expression in the page (promises awaited)."""
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout_s: float = 30):
        """The first truthy value of `expression`, polled until `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        while True:
            value = self.run(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"still falsy after {timeout_s} s: {expression}")
            time.sleep(0.05)

    def type(self, text: str) -> None:
        """Text into the focused element, as typing would put it there."""
        self.send("Input.insertText", text=text)

    def press(self, key: str, modifiers: int = 0) -> None:
        """A key press on the focused element (modifiers: 2 is Ctrl)."""
        code = _KEYS[key]
        text = {"text": "\r"} if key == "Enter" else {}
        for kind in ("rawKeyDown" if not text else "keyDown", "keyUp"):
            self.send("Input.dispatchKeyEvent", type=kind, key=key, code=key, windowsVirtualKeyCode=code,
                      modifiers=modifiers, **(text if kind == "keyDown" else {}))

    def screenshot(self, path: Path) -> Path:
        shot = self.send("Page.captureScreenshot", format="png")
        path.write_bytes(base64.b64decode(shot["data"]))
        return path

    def close(self) -> None:
        if getattr(self, "socket", None) is not None:
            self.socket.close()
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
