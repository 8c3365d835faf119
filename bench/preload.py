#!/usr/bin/env python3
"""RESP for SET <key> <value> EX 3600, written straight to redis-cli --pipe.

Usage: preload.py KEYS VALUE_FILE | redis-cli --pipe
"""
import sys
keys, value = int(sys.argv[1]), open(sys.argv[2], "rb").read()
out = sys.stdout.buffer
def bulk(b): return b"$%d\r\n%s\r\n" % (len(b), b)
tail = bulk(value) + bulk(b"EX") + bulk(b"3600")
for i in range(keys):
    for k in (b"bench:%d" % i, b"key:%012d" % i):
        out.write(b"*5\r\n" + bulk(b"SET") + bulk(k) + tail)
