"""Opens a `finch data doctor` report in Debian's headless Chromium (python3-selenium).

  doctor_page.py DOCTOR.html REASON[,REASON...]

Checks that the page loads from the file alone, that every thumbnail <img> decoded (natural
width > 0), that a section exists for each REASON with at least one thumbnail in it (or a table row, for
files that do not decode), and that
the page made no network request. Saves DOCTOR.png next to the page. Exits non-zero with a
message on any failure; prints "page check: ok" otherwise.
"""
import os
import sys

from selenium.webdriver.common.by import By

from headless import network_requests, start_chromium


def main():
    page, reasons = os.path.abspath(sys.argv[1]), sys.argv[2].split(",")
    driver = start_chromium()
    problems = []
    try:
        driver.get("file://" + page)
        images = driver.find_elements(By.TAG_NAME, "img")
        broken = [i.get_attribute("alt") for i in images
                  if not driver.execute_script("return arguments[0].complete && "
                                               "arguments[0].naturalWidth > 0", i)]
        if not images:
            problems.append("no thumbnails on the page")
        if broken:
            problems.append(f"{len(broken)} thumbnails did not decode: {broken[:3]}")
        for reason in reasons:
            heads = driver.find_elements(By.ID, reason)
            if not heads:
                problems.append(f"no section #{reason}")
                continue
            # The thumbnails of a section sit between its heading and the next one.
            count = driver.execute_script(
                "let n = 0, e = arguments[0].nextElementSibling;"
                "while (e && e.tagName !== 'H2') { n += e.querySelectorAll('img, .nothumb, td').length;"
                " e = e.nextElementSibling; } return n;", heads[0])
            if count == 0:
                problems.append(f"section #{reason} has no thumbnail")
        driver.save_screenshot(os.path.splitext(page)[0] + ".png")
        network = network_requests(driver)
        if network:
            problems.append(f"network requests: {network[:3]}")
    finally:
        driver.quit()
    if problems:
        print("page check failed:\n  " + "\n  ".join(problems))
        sys.exit(1)
    print("page check: ok")


if __name__ == "__main__":
    main()
