#!/usr/bin/env python3
"""The baseline of the `efficiency` benchmark: how a typical MoneyKit user
keeps links fresh with MoneyKit's official Python SDK (`pip install
moneykit==0.2.3`).

Every `--period` seconds it refreshes every product of every link, one
`POST /links/{id}/products` per product, as MoneyKit's own examples call
`ProductsApi.refresh_products`. Like those examples it gets a token with the
client credentials and re-authenticates when it expires; a 429 is logged and
skipped (the SDK has no retry logic of its own; retrying a 429 in a tight loop
would only cost more requests). Nothing here is made slow on purpose.

Prints one JSON line of counters at the end.
"""

import argparse
import json
import sys
import time

import moneykit
from moneykit.api.access_token_api import AccessTokenApi
from moneykit.api.products_api import ProductsApi
from moneykit.exceptions import ApiException
from moneykit.models.product import Product
from moneykit.models.refresh_products_request import RefreshProductsRequest


def read_links(path):
    """Lines of `ID product,product` (the links_file format)."""
    links = []
    with open(path) as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            parts = line.split()
            products = parts[1].split(",") if len(parts) > 1 else ["accounts", "transactions"]
            links.append((parts[0], [Product(p) for p in products]))
    return links


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", required=True)
    ap.add_argument("--client-id", required=True)
    ap.add_argument("--client-secret", required=True)
    ap.add_argument("--links", required=True, help="links file: ID product,product")
    ap.add_argument("--period", type=float, default=3600.0, help="seconds between refresh rounds")
    ap.add_argument("--duration", type=float, default=0.0, help="stop after this many seconds (0: never)")
    args = ap.parse_args()

    links = read_links(args.links)
    config = moneykit.Configuration(host=args.host)
    api_client = moneykit.ApiClient(config)

    def authenticate():
        token = AccessTokenApi(api_client).create_access_token(
            grant_type="client_credentials",
            client_id=args.client_id,
            client_secret=args.client_secret,
        )
        config.access_token = token.access_token
        return time.monotonic() + token.expires_in

    expires = authenticate()
    products_api = ProductsApi(api_client)
    counts = {"posts": 0, "accepted": 0, "rate_limited": 0, "errors": 0, "rounds": 0}
    start = time.monotonic()

    def done():
        return args.duration > 0 and time.monotonic() - start >= args.duration

    while not done():
        round_start = time.monotonic()
        for link_id, products in links:
            for product in products:
                if done():
                    break
                if time.monotonic() >= expires - 60:
                    expires = authenticate()
                counts["posts"] += 1
                try:
                    products_api.refresh_products(
                        link_id, RefreshProductsRequest(products=[product])
                    )
                    counts["accepted"] += 1
                except ApiException as e:
                    if e.status == 429:
                        counts["rate_limited"] += 1
                    elif e.status == 401:
                        expires = authenticate()
                        counts["errors"] += 1
                    else:
                        counts["errors"] += 1
                        print(f"{link_id} {product.value}: HTTP {e.status}", file=sys.stderr)
        counts["rounds"] += 1
        # Fixed period: the next round starts `period` after this one started.
        pause = args.period - (time.monotonic() - round_start)
        if pause > 0 and not done():
            time.sleep(min(pause, max(0.0, args.duration - (time.monotonic() - start)) if args.duration else pause))
    print(json.dumps(counts))


if __name__ == "__main__":
    main()
