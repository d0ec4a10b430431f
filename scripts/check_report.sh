#!/usr/bin/env bash
# Opens a finch report in headless Chromium and fails unless it is self-contained:
#   1. no src/href/url() in the HTML that points at http(s):// or a protocol-relative //host;
#   2. loaded with every host name unresolvable (--host-resolver-rules), Chromium's network
#      log (--log-net-log) shows no request by the page other than file: and data: URLs;
#   3. no console message (the page has no script: any message is an error or a failed load).
# Writes a screenshot (1400 x 3000 px) to look at.
# usage: scripts/check_report.sh REPORT.html [SCREENSHOT.png]
# Installs Debian's chromium when missing (root or sudo); not part of install-deps.sh on
# purpose: it is ~300 MB and only this check needs it.
set -euo pipefail

if [ $# -lt 1 ] || [ ! -f "$1" ]; then
  echo "usage: $0 REPORT.html [SCREENSHOT.png]" >&2
  exit 2
fi
report=$(realpath "$1")
shot=${2:-${report%.html}.png}

if ! command -v chromium >/dev/null 2>&1; then
  echo "== installing Debian's chromium (headless check only)"
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium
fi

fail=0
echo "== static check: external references in $report"
if grep -Eio "(src|href)[[:space:]]*=[[:space:]]*[\"']?(https?:)?//[^\"' >]*" "$report"; then
  echo "FAIL: the report references external resources (above)"
  fail=1
fi
if grep -Eio "(url\(|@import)[[:space:]]*[\"']?(https?:)?//[^\"') ]*" "$report"; then
  echo "FAIL: the report's CSS references external resources (above)"
  fail=1
fi
if grep -Eio "<script[^>]*src" "$report"; then
  echo "FAIL: external script"
  fail=1
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "== loading in headless Chromium (all host names unresolvable)"
# --virtual-time-budget lets the page finish loading before the screenshot. The --disable-*
# flags stop the browser's own background traffic (updater, sign-in, spell-check
# dictionaries), so that every request left in the network log comes from the page.
chromium --headless=new --no-sandbox --disable-gpu --no-first-run --no-default-browser-check \
  --user-data-dir="$work/profile" --host-resolver-rules="MAP * ~NOTFOUND" \
  --disable-background-networking --disable-component-update --disable-sync \
  --disable-default-apps --disable-extensions --no-pings --disable-domain-reliability \
  --disable-features=SpellcheckService,Translate,OptimizationHints,MediaRouter \
  --enable-logging=stderr --v=0 --log-net-log="$work/net.json" --net-log-capture-mode=Default \
  --virtual-time-budget=5000 --window-size=1400,3000 --hide-scrollbars \
  --screenshot="$shot" "file://$report" >"$work/stdout.log" 2>"$work/chromium.log" || {
  echo "FAIL: chromium exited with status $?"
  cat "$work/chromium.log"
  exit 1
}

# Console messages are logged as `...:CONSOLE(line)] "text", source: URL`. The report has no
# JavaScript, so any console message (an uncaught error, "Failed to load resource") fails.
if grep -E ":CONSOLE\(" "$work/chromium.log"; then
  echo "FAIL: console messages (above)"
  fail=1
fi
# Every URL request the page starts has the page's origin as initiator ("null" for a file:
# page); the browser's own traffic (updater, sign-in, dictionaries) has "not an origin".
if [ -f "$work/net.json" ]; then
  if ! /usr/bin/env python3 - "$work/net.json" <<'PY'
import json, sys
log = json.load(open(sys.argv[1]))
names = {v: k for k, v in log["constants"]["logEventTypes"].items()}
page, external = set(), set()
for event in log["events"]:
    params = event.get("params") or {}
    if names.get(event["type"]) != "URL_REQUEST_START_JOB" or "url" not in params:
        continue
    if params.get("initiator") == "not an origin":
        continue  # the browser's own requests, not the page's
    page.add(params["url"])
    if not params["url"].startswith(("file:", "data:")):
        external.add(params["url"])
for url in sorted(external):
    print("FAIL: the page requested", url)
print("   network log: %d page requests, %d external" % (len(page), len(external)))
sys.exit(1 if external else 0)
PY
  then
    fail=1
  fi
else
  echo "FAIL: Chromium wrote no network log"
  fail=1
fi
if [ ! -s "$shot" ]; then
  echo "FAIL: no screenshot"
  fail=1
fi
if [ "$fail" -ne 0 ]; then
  echo "== report check FAILED"
  exit 1
fi
echo "== report check passed: no external requests, no console errors; screenshot $shot"
