#!/usr/bin/env python3
"""RESP for SET <key> <value> EX 3600, written straight to redis-cli --pipe.

Usage: preload.py KEYS VALUE_FILE [SLOTS] | redis-cli --pipe

SLOTS (a Redis Cluster node's ranges, "0-5460" or "0-10,20-30"): only the keys whose hash
slot lies in them, so that each node of a cluster gets its own share through its own pipe.
"""
import sys


def _crc16_table():
    table = []
    for byte in range(256):
        crc = byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
        table.append(crc)
    return table


CRC16_TABLE = _crc16_table()


def crc16(data):
    """CRC-16/XMODEM, the checksum of Redis Cluster's key slots."""
    crc = 0
    for byte in data:
        crc = ((crc << 8) & 0xFFFF) ^ CRC16_TABLE[(crc >> 8) ^ byte]
    return crc


def slot(key):
    """The hash slot of a key: of its hash tag ({...}, not empty) when it has one."""
    start = key.find(b"{")
    if start >= 0:
        end = key.find(b"}", start + 1)
        if end > start + 1:
            key = key[start + 1:end]
    return crc16(key) % 16384


keys, value = int(sys.argv[1]), open(sys.argv[2], "rb").read()
ranges = None
if len(sys.argv) > 3:
    ranges = [tuple(int(n) for n in r.split("-")) if "-" in r else (int(r), int(r))
              for r in sys.argv[3].split(",")]
out = sys.stdout.buffer
def bulk(b): return b"$%d\r\n%s\r\n" % (len(b), b)
tail = bulk(value) + bulk(b"EX") + bulk(b"3600")
for i in range(keys):
    for k in (b"bench:%d" % i, b"key:%012d" % i):
        if ranges is None or any(lo <= slot(k) <= hi for lo, hi in ranges):
            out.write(b"*5\r\n" + bulk(b"SET") + bulk(k) + tail)
