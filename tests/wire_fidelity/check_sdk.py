#!/usr/bin/env python3
"""Checks the simulator against MoneyKit's own OpenAPI-generated Python SDK
(PyPI `moneykit` 0.2.x): if the SDK cannot parse what the simulator sends, or
the error statuses differ, the simulator is not speaking MoneyKit's wire format.

Usage: check_sdk.py SIM_BASE_URL   (default credentials; links mk_sdk_missing,
mk_sdk_deleted and mk_sdk_broken configured as not_found, deleted, needs_user_action)
Exits 0 when everything matches, 1 on a mismatch, 3 when the SDK is missing.
"""
import sys

try:
    import moneykit
    from moneykit.api.access_token_api import AccessTokenApi
    from moneykit.api.links_api import LinksApi
    from moneykit.api.products_api import ProductsApi
    from moneykit.exceptions import ApiException
    from moneykit.models.refresh_products_request import RefreshProductsRequest
    from moneykit.models.product import Product
except ImportError as e:  # pragma: no cover
    print(f"moneykit SDK not importable ({e}); pip install moneykit", file=sys.stderr)
    sys.exit(3)

FAILURES = []


def check(cond, what):
    if cond:
        print(f"ok   {what}")
    else:
        print(f"FAIL {what}")
        FAILURES.append(what)


def expect_status(status, what, fn):
    try:
        fn()
    except ApiException as e:
        check(e.status == status, f"{what}: ApiException status {e.status} == {status}")
        return e
    check(False, f"{what}: expected ApiException {status}, got success")
    return None


def main(base):
    # 1. Token via form fields.
    cfg = moneykit.Configuration(host=base)
    token = AccessTokenApi(moneykit.ApiClient(cfg)).create_access_token(
        grant_type="client_credentials", client_id="sim_client", client_secret="sim_secret"
    )
    check(token.token_type == "bearer" and token.expires_in > 0 and token.access_token,
          "create_access_token (form) parses into CreateAccessTokenResponse")

    # 2. Token via HTTP Basic, as the SDK's auth settings do.
    basic = moneykit.Configuration(host=base, username="sim_client", password="sim_secret")
    t2 = AccessTokenApi(moneykit.ApiClient(basic)).create_access_token(grant_type="client_credentials")
    check(bool(t2.access_token), "create_access_token (HTTP Basic) works")

    # 3. Bad credentials.
    bad = moneykit.Configuration(host=base)
    expect_status(401, "bad credentials", lambda: AccessTokenApi(moneykit.ApiClient(bad)).create_access_token(
        grant_type="client_credentials", client_id="sim_client", client_secret="nope"))

    authed = moneykit.Configuration(host=base, access_token=token.access_token)
    client = moneykit.ApiClient(authed)
    client.set_default_header("moneykit-version", "2023-02-18")
    products = ProductsApi(client)
    links = LinksApi(client)

    # 4. Refresh: 202 parses as LinkCommon (transactions need has_history, etc.).
    req = RefreshProductsRequest(products=[Product.ACCOUNTS, Product.TRANSACTIONS])
    link = products.refresh_products("mk_sdk_check", req)
    check(link.link_id == "mk_sdk_check", "refresh_products 202 parses into LinkCommon")
    check(link.products.accounts is not None and link.products.accounts.refreshed_at is not None,
          "202 body carries products.accounts.refreshed_at")
    check(link.state.value == "connected", "state is connected")

    # 5. Same products again: 429 with Retry-After.
    e = expect_status(429, "refresh inside the window", lambda: products.refresh_products("mk_sdk_check", req))
    if e is not None:
        ra = (e.headers or {}).get("Retry-After") or (e.headers or {}).get("retry-after")
        check(ra is not None and ra.isdigit(), f"429 carries delta-seconds Retry-After ({ra!r})")
        check("api_error.rate_limit_exceeded" in (e.body or ""), "429 body has error_code rate_limit_exceeded")

    # 6. GET /links/{id} parses.
    got = links.get_link("mk_sdk_check")
    check(got.link_id == "mk_sdk_check" and got.products.transactions is not None,
          "get_link 200 parses into LinkCommon")

    # 7. GET /links lists it.
    page = links.get_links(limit=500)
    check(any(l.link_id == "mk_sdk_check" for l in (page.links or [])), "get_links lists the link")

    # 8. Bad token: 401.
    stale = moneykit.ApiClient(moneykit.Configuration(host=base, access_token="not-a-token"))
    expect_status(401, "unknown bearer token", lambda: LinksApi(stale).get_link("mk_sdk_check"))

    # 9. Links the simulator is configured to break (see tests/client/wire_fidelity.rs).
    expect_status(404, "refresh of a missing link", lambda: products.refresh_products("mk_sdk_missing", req))
    expect_status(404, "get_link of a missing link", lambda: links.get_link("mk_sdk_missing"))
    expect_status(410, "refresh of a deleted link", lambda: products.refresh_products("mk_sdk_deleted", req))
    e = expect_status(422, "refresh of a broken link", lambda: products.refresh_products("mk_sdk_broken", req))
    if e is not None:
        check('"link_error_code":"auth_expired"' in (e.body or "").replace(" ", ""), "422 carries link_error_code")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print("usage: check_sdk.py SIM_BASE_URL", file=sys.stderr)
        sys.exit(2)
    try:
        main(sys.argv[1].rstrip("/"))
    except Exception as e:  # any parse/validation error is a mismatch
        import traceback
        traceback.print_exc()
        FAILURES.append(f"unexpected exception: {e!r}")
    if FAILURES:
        print(f"{len(FAILURES)} mismatch(es): {FAILURES}", file=sys.stderr)
        sys.exit(1)
    print("simulator matches the moneykit SDK")
