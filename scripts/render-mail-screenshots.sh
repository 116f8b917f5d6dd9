#!/usr/bin/env bash
# render-mail-screenshots.sh — regenerate docs/mail-oncall.png, docs/mail-stakeholder.png and
# docs/mail-oncall-forensics.png, screenshots of the HTML part of alert mails, as a mail client
# would show them. The forensics one is the first on-call mail of the replay with an onset and a
# layer attribution attached (issue 14) and a per-layer runbook.
#
# The mails come from a deterministic replay (an error burst and a PII leak in a generated
# stream) rendered by the `alerts::mail_previews` integration test, which writes every mail as
# HTML (with its chart beside it) when SLAWATCH_MAIL_PREVIEW_DIR is set. Headless Chromium
# takes the screenshots (Debian: `apt-get install -y chromium`).
#
#   scripts/render-mail-screenshots.sh            # writes docs/mail-*.png
#   KEEP=1 scripts/render-mail-screenshots.sh     # also keeps the HTML previews, printed path
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

CHROMIUM="${CHROMIUM:-$(command -v chromium || command -v chromium-browser || true)}"
if [ -z "$CHROMIUM" ]; then
    echo "render-mail-screenshots: chromium not found (apt-get install -y chromium)" >&2
    exit 1
fi

work="$(mktemp -d)"
cleanup() { if [ -z "${KEEP:-}" ]; then rm -rf "$work"; else echo "previews kept in $work/mails"; fi; }
trap cleanup EXIT

SLAWATCH_MAIL_PREVIEW_DIR="$work/mails" cargo test --quiet --test it alerts::mail_previews >/dev/null

shot() { # shot PREVIEW OUT HEIGHT
    local html="$work/mails/$1.html"
    [ -f "$html" ] || { echo "render-mail-screenshots: no preview $1 in $work/mails" >&2; exit 1; }
    "$CHROMIUM" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
        --disable-background-networking --disable-component-update --disable-sync \
        --hide-scrollbars --user-data-dir="$(mktemp -d -p "$work")" \
        --screenshot="$2" --window-size="900,$3" "file://$html" >/dev/null 2>&1
    [ -s "$2" ] || { echo "render-mail-screenshots: chromium wrote no $2" >&2; exit 1; }
    echo "wrote $2"
}

mkdir -p docs
shot oncall-firing-success-page docs/mail-oncall.png 1530
shot stakeholder-projected_breach-success-page docs/mail-stakeholder.png 900
shot oncall-firing-forensics docs/mail-oncall-forensics.png 1730
