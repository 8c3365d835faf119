"""Round trip through a Python client generated from openapi/openapi.json.

Usage: CACHEGATE_TOKEN=... client_roundtrip.py BASE_URL, with the generated package
`cachegate_client` on PYTHONPATH (ci/openapi.sh generates it into a temporary folder). Puts, gets, lists,
batch-gets and deletes against a live cachegate, asserting each answer, so a document that
drifts from the service, or a client that cannot be generated from it, fails CI.
"""

import os
import sys
import uuid

from cachegate_client import AuthenticatedClient, Client
from cachegate_client.api.batch import batch_delete, batch_get, batch_set
from cachegate_client.api.cache import delete_value, get_ttl, get_value, list_keys, put_value
from cachegate_client.models import EntriesBody, Entry, ErrorBody, Found, KeyList, KeysBody

TTL = 60


def expect(response, status, what):
    assert response.status_code == status, (
        f"{what}: expected {status}, got {response.status_code}: {response.content!r}"
    )
    return response.parsed


def list_all(client, pattern):
    """Every key matching `pattern`, one key per page, to walk the cursor too."""
    keys, cursor, pages = [], None, 0
    while True:
        kwargs = {"pattern": pattern, "limit": 1}
        if cursor is not None:
            kwargs["cursor"] = cursor
        page = expect(list_keys.sync_detailed(client=client, **kwargs), 200, "list")
        assert isinstance(page, KeyList), page
        keys.extend(page.keys)
        pages += 1
        assert pages < 100, "the listing does not end"
        if page.next_cursor is None:
            return set(keys)
        cursor = page.next_cursor


def main(base_url, token):
    client = AuthenticatedClient(base_url=base_url, token=token, raise_on_unexpected_status=True)
    run = uuid.uuid4().hex
    # Keys with a slash, a space, glob characters and non-ASCII text: the client must encode them.
    first = f"roundtrip-{run}:user/1 [a]?é"
    second = f"roundtrip-{run}:user/2"
    absent = f"roundtrip-{run}:absent"
    value = {"name": "Ada", "tags": [1, 2.5, None], "nested": {"ok": True}}

    # put and get
    expect(put_value.sync_detailed(first, client=client, body=value, ttl=TTL), 204, "put")
    got = get_value.sync_detailed(first, client=client)
    assert expect(got, 200, "get") == value, got.parsed
    assert got.headers["x-cache"] == "HIT", got.headers
    assert got.headers.get("x-request-id"), got.headers
    ttl = expect(get_ttl.sync_detailed(first, client=client), 200, "get ttl").ttl
    assert 0 < ttl <= TTL, ttl

    # a value that is not an object, written with the generated batch set
    entries = EntriesBody(entries=[Entry(key=second, value=[1, "two", None], ttl=TTL)])
    written = expect(batch_set.sync_detailed(client=client, body=entries), 200, "batch set")
    assert written.written == 1, written

    # list
    listed = list_all(client, f"roundtrip-{run}:*")
    assert listed == {first, second}, listed

    # batch get
    found = expect(
        batch_get.sync_detailed(client=client, body=KeysBody(keys=[first, second, absent])),
        200,
        "batch get",
    )
    assert isinstance(found, Found), found
    assert found.found.additional_properties == {first: value, second: [1, "two", None]}, found
    assert found.missing == [absent], found.missing

    # delete, then the key is gone
    expect(delete_value.sync_detailed(first, client=client), 204, "delete")
    miss = get_value.sync_detailed(first, client=client)
    error = expect(miss, 404, "get after delete")
    assert isinstance(error, ErrorBody) and error.error.code.value == "key_not_found", error
    assert miss.headers["x-cache"] == "MISS", miss.headers
    deleted = expect(
        batch_delete.sync_detailed(client=client, body=KeysBody(keys=[second, absent])),
        200,
        "batch delete",
    )
    assert deleted.deleted == 1, deleted
    assert list_all(client, f"roundtrip-{run}:*") == set()

    # without a token the same call is refused
    anonymous = Client(base_url=base_url, raise_on_unexpected_status=True)
    refused = get_value.sync_detailed(second, client=anonymous)
    error = expect(refused, 401, "get without a token")
    assert error.error.code.value == "unauthorized", error
    assert refused.headers["www-authenticate"].lower().startswith("bearer"), refused.headers

    print("generated client round trip: put, get, ttl, batch set, list, batch get, delete: ok")


if __name__ == "__main__":
    if len(sys.argv) != 2 or not os.environ.get("CACHEGATE_TOKEN"):
        sys.exit("usage: CACHEGATE_TOKEN=<token> client_roundtrip.py BASE_URL")
    main(sys.argv[1], os.environ["CACHEGATE_TOKEN"])
