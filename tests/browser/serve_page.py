"""Drives finch serve's web page in Debian's headless Chromium (python3-selenium + chromedriver).

  serve_page.py URL IMAGE EXPECTED_TOP1 SCREENSHOT.png

Uploads IMAGE through the page's file input, waits for the page to finish (status "done"),
checks that the top-1 class shown equals EXPECTED_TOP1 (what `finch predict` says), that the
Grad-CAM overlay was drawn, and that every request the page made went to URL (no CDN, works
offline). Saves a screenshot. Exits non-zero with a message on any failure.
"""
import json
import sys
import tempfile

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait


def main():
    url, image, expected, screenshot = sys.argv[1:5]
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1100,900", f"--user-data-dir={tempfile.mkdtemp()}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    try:
        driver.get(url)
        WebDriverWait(driver, 30).until(
            lambda d: "classes" in d.find_element(By.ID, "model").text)
        driver.find_element(By.ID, "file").send_keys(image)
        WebDriverWait(driver, 60).until(
            lambda d: d.find_element(By.ID, "status").text in ("done",) or
            d.find_element(By.ID, "status").text.startswith("error"))
        status = driver.find_element(By.ID, "status").text
        top1 = driver.find_element(By.ID, "top1").text
        overlay = driver.find_element(By.ID, "overlay").get_attribute("src") or ""
        rows = driver.find_elements(By.CSS_SELECTOR, "#results .row")
        driver.save_screenshot(screenshot)
        requests = []
        for entry in driver.get_log("performance"):
            message = json.loads(entry["message"])["message"]
            if message.get("method") == "Network.requestWillBeSent":
                requests.append(message["params"]["request"]["url"])
        # Network requests only (chrome:// pages are the browser's own start-up, not ours).
        network = [r for r in requests if r.split(":", 1)[0] in ("http", "https", "ws", "wss")]
        outside = [r for r in network if not r.startswith(url)]
        problems = []
        if status != "done":
            problems.append(f"page status: {status!r}")
        if top1 != expected:
            problems.append(f"top-1 shown {top1!r}, finch predict says {expected!r}")
        if len(rows) != min(5, len(rows)) or not rows:
            problems.append(f"{len(rows)} result rows")
        if not overlay.startswith("data:image/png;base64,"):
            problems.append("no Grad-CAM overlay")
        if outside:
            problems.append(f"requests outside the server: {outside}")
        print(json.dumps({"top1": top1, "rows": len(rows), "requests": network}))
        if problems:
            print("PROBLEMS " + "; ".join(problems))
            sys.exit(1)
        print("page check: ok")
    finally:
        driver.quit()


if __name__ == "__main__":
    main()
