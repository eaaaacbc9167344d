"""The test receiver of linkfresh's outbound events: an independent
verifier. Every delivery is checked with the Standard Webhooks package from
PyPI (`standardwebhooks`), not with linkfresh's own code, and logged as one
JSON line: {"id", "verified", "error", "status", "body"}.

Usage: receiver.py SECRET LOG_FILE MODE_FILE
MODE_FILE holds the answer to verified deliveries: "ok" (204), "fail"
(503, a receiver that is down) or "gone" (410); re-read on every request.
Prints the port it listens on (loopback, chosen by the OS) as its first line.
"""

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

SECRET, LOG, MODE = sys.argv[1], sys.argv[2], sys.argv[3]
HOOK = Webhook(SECRET)
LOCK = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        headers = {k: v for k, v in self.headers.items()}
        try:
            HOOK.verify(body, headers)
            verified, error = True, None
        except WebhookVerificationError as e:
            verified, error = False, str(e)
        if not verified:
            status = 401
        else:
            with open(MODE) as f:
                mode = f.read().strip()
            status = {"ok": 204, "fail": 503, "gone": 410}.get(mode, 500)
        line = {
            "id": headers.get("webhook-id") or headers.get("Webhook-Id"),
            "verified": verified,
            "error": error,
            "status": status,
            "body": body.decode("utf-8", "replace"),
        }
        with LOCK, open(LOG, "a") as f:
            f.write(json.dumps(line) + "\n")
        self.send_response(status)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
