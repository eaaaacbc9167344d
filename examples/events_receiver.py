#!/usr/bin/env python3
"""A receiver for linkfresh's outbound events, in five minutes.

    pip install standardwebhooks
    LINKFRESH_EVENTS_SECRET=whsec_... python3 examples/events_receiver.py 8080

and in linkfresh.toml:

    [events]
    url = "http://127.0.0.1:8080/hooks/linkfresh"
    secret = "whsec_..."        # the same secret

Every delivery is verified with the Standard Webhooks package (signature and
timestamp: a forged or replayed-later delivery is refused with 401), then
deduplicated by its `webhook-id` (linkfresh delivers at least once: a retry
after a lost answer carries the same id), then handled. Answer 2xx quickly;
anything else is retried with backoff for `[events] retry_for`, and 410
Gone tells linkfresh to stop sending.

Without LINKFRESH_EVENTS_SECRET it uses the secret `linkfresh demo` prints.
"""

import json
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

DEMO_SECRET = "whsec_bGlua2ZyZXNoLWRlbW8tc2VjcmV0LWRvLW5vdC11c2U="
HOOK = Webhook(os.environ.get("LINKFRESH_EVENTS_SECRET", DEMO_SECRET))
SEEN = set()  # use your database in production: ids must survive restarts


def handle(event):
    """Your app's reaction. `event["data"]` has link_id, product, reason and
    linkfresh's view of the link (state, products, last_requested_at)."""
    data = event["data"]
    if event["type"] == "link.needs_user_action":
        print(f"ask the owner of {data['link_id']} to reconnect ({data.get('link_error_code')})")
    elif event["type"] == "data.stale":
        print(f"{data['product']} of {data['link_id']} is stale: {data['reason']}")
    else:
        print(f"{event['type']}: {data['link_id']} {data.get('product') or ''} {data.get('reason') or ''}")


class Receiver(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        try:
            event = HOOK.verify(body, dict(self.headers.items()))
        except WebhookVerificationError as e:
            print(f"rejected a delivery: {e}", file=sys.stderr)
            self.send_response(401)
            self.end_headers()
            return
        event_id = self.headers["webhook-id"]
        if event_id not in SEEN:
            SEEN.add(event_id)
            handle(event)
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8080
    print(f"listening on http://127.0.0.1:{port}/hooks/linkfresh", flush=True)
    ThreadingHTTPServer(("127.0.0.1", port), Receiver).serve_forever()
