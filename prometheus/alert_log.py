"""A minimal Alertmanager webhook receiver that prints every alert it is sent.

The compose stack runs it as the `alert-log` service (`docker compose logs -f
alert-log`); locally: `python3 prometheus/alert_log.py --port 19096` (the stack's
RETENTION_WEBHOOK_PORT). Standard library only, so it runs in a bare python image.
"""

from __future__ import annotations

import argparse
import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class AlertLog(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        try:
            payload = json.loads(body)
            for alert in payload.get("alerts", []):
                labels = alert.get("labels", {})
                notes = alert.get("annotations", {})
                name = labels.get("alertname", "?")
                extra = {k: v for k, v in sorted(labels.items()) if k != "alertname"}
                print(f"[{alert.get('status', '?')}] {name} {extra}", flush=True)
                for key in ("summary", "dashboard"):
                    if key in notes:
                        print(f"    {key}: {notes[key]}", flush=True)
        except (ValueError, AttributeError) as exc:
            print(f"unreadable webhook payload ({exc}): {body[:200]!r}", flush=True)
        self.send_response(200)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass  # one line per alert above is enough


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=5001)
    args = parser.parse_args()
    print(f"alert log listening on {args.host}:{args.port}", flush=True)
    ThreadingHTTPServer((args.host, args.port), AlertLog).serve_forever()


if __name__ == "__main__":
    main()
