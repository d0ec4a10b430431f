"""Drives finch serve's web page in Debian's headless Chromium (python3-selenium + chromedriver).

  serve_page.py URL IMAGE EXPECTED_TOP1 SCREENSHOT.png

Uploads IMAGE through the page's file input, waits for the page to finish (status "done"),
checks that the top-1 class shown equals EXPECTED_TOP1 (what `finch predict` says), that the
Grad-CAM overlay was drawn, and that every request the page made went to URL (no CDN, works
offline). Saves a screenshot. Exits non-zero with a message on any failure.
"""
import json
import sys

from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from headless import network_requests, start_chromium


def main():
    url, image, expected, screenshot = sys.argv[1:5]
    driver = start_chromium()
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
        network = network_requests(driver)
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
