"""A real headless browser for tests of web pages: Debian's Chromium driven through its
chromedriver with Selenium (``make setup`` installs both), and a loopback HTTP server that
records what the page fetched. A missing browser fails the tests that need it, in one line.

``browser``
    A fresh headless Chromium for one test (1000 x 800 CSS pixels, device scale 1), its
    console kept: :func:`console_errors` reads it.
``http_folder``
    ``serve(folder) -> (base URL, list of the paths requested)``: the folder on 127.0.0.1.
"""
from __future__ import annotations

import functools
import http.server
import shutil
import threading

import pytest

__all__ = ["browser", "http_folder", "console_errors", "WINDOW_SIZE"]

WINDOW_SIZE = (1000, 800)


@pytest.fixture
def browser():
    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if chromium is None or driver_path is None:
        pytest.fail("chromium and chromedriver are missing: make setup installs them (apt-get install chromium "
                    "chromium-driver)", pytrace=False)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     f"--window-size={WINDOW_SIZE[0]},{WINDOW_SIZE[1]}", "--force-device-scale-factor=1",
                     "--allow-file-access-from-files"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(driver_path))
    driver.set_script_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def console_errors(driver) -> list[str]:
    """The page's console errors (and failed loads) since the last call."""
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


class _Handler(http.server.SimpleHTTPRequestHandler):
    def __init__(self, *args, requested: list, **kwargs):
        self.requested = requested
        super().__init__(*args, **kwargs)

    def do_GET(self):  # noqa: N802 - the standard library's name
        self.requested.append(self.path)
        super().do_GET()

    def log_message(self, *args):  # quiet
        pass


@pytest.fixture
def http_folder():
    servers = []

    def serve(folder: str) -> tuple[str, list]:
        requested: list = []
        handler = functools.partial(_Handler, directory=folder, requested=requested)
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}", requested

    yield serve
    for server in servers:
        server.shutdown()
        server.server_close()
