"""Debian's Chromium, headless, through chromedriver (python3-selenium): what the page checks share."""
import json
import tempfile

from selenium import webdriver
from selenium.webdriver.chrome.service import Service


def start_chromium():
    """A headless Chromium with its network log on and a fresh profile; quit() it when done."""
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1100,900", f"--user-data-dir={tempfile.mkdtemp()}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


def network_requests(driver):
    """URLs of the network requests the page made (http, https, ws, wss; the browser's own
    chrome:// start-up pages are not the page's)."""
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message.get("method") == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return [u for u in urls if u.split(":", 1)[0] in ("http", "https", "ws", "wss")]
