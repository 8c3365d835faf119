"""Parses cachegate's /metrics with the Prometheus reference parser (prometheus_client) and
checks that every family has HELP text and a type. tests/metrics.rs does the same with a
strict parser of its own; this is the second opinion of the Python client library.

Usage: CACHEGATE_TOKEN=... metrics_exposition.py BASE_URL
"""

import os
import sys
import urllib.request

from prometheus_client.parser import text_string_to_metric_families


def main(base_url: str, token: str) -> None:
    request = urllib.request.Request(
        f"{base_url}/metrics", headers={"Authorization": f"Bearer {token}"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        text = response.read().decode()
    families = list(text_string_to_metric_families(text))
    assert families, f"no metric families in:\n{text}"
    for family in families:
        assert family.documentation.strip(), f"{family.name} has no HELP text"
        assert family.type in ("counter", "gauge", "histogram", "summary"), (
            f"{family.name} has type {family.type}"
        )
        assert family.samples, f"{family.name} has no samples"
    names = sorted(family.name for family in families)
    print(f"/metrics: {len(families)} families, each with HELP and TYPE: {', '.join(names)}")


if __name__ == "__main__":
    if len(sys.argv) != 2 or not os.environ.get("CACHEGATE_TOKEN"):
        sys.exit("usage: CACHEGATE_TOKEN=<token> metrics_exposition.py BASE_URL")
    main(sys.argv[1], os.environ["CACHEGATE_TOKEN"])
