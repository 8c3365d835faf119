#!/usr/bin/env python3
"""A JSON document of exactly N bytes shaped like a typical cached API response.

Usage: make_value.py N PATH
"""
import json, sys
n, path = int(sys.argv[1]), sys.argv[2]
doc = {"id": 184467, "type": "product", "active": True, "price": 129.95, "currency": "EUR",
       "tags": ["cache", "bench", "json"], "items": [], "note": ""}
i = 0
while True:
    doc["items"].append({"sku": f"SKU-{i:05d}", "qty": i % 7 + 1, "price": round(3.5 + i * 1.25, 2)})
    if len(json.dumps(doc, separators=(",", ":"))) > n - 16:
        doc["items"].pop()
        break
    i += 1
base = len(json.dumps(doc, separators=(",", ":")))
doc["note"] = "x" * (n - base)
text = json.dumps(doc, separators=(",", ":"))
assert len(text.encode()) == n, (len(text), n)
open(path, "w").write(text)
