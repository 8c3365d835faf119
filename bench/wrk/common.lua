-- Shared by the bench/wrk/*.lua scenarios (loaded with dofile from each of them).
--
-- Environment (set by bench/run.sh):
--   BENCH_TARGET      cachegate (default) or webdis: which URL scheme to speak
--   BENCH_KEYS        number of preloaded keys, named <BENCH_PREFIX><i> for i in 0..KEYS-1
--   BENCH_PREFIX      key prefix, default "bench:"
--   BENCH_VALUE_FILE  file holding the JSON value written by PUT (default: a 1 KiB JSON string)
--   BENCH_TTL         ttl of a PUT, seconds (default 300)
--   BENCH_BATCH       keys per batch get (default 10)
--   BENCH_PUT_PERCENT share of PUTs in the mix scenario (default 10)
--   BENCH_IF_MATCH    the ETag a conditional PUT sends in If-Match (put_if_match.lua)
--
-- Requests are formatted once, in init(), and picked at random per request, so wrk's single
-- thread spends its time on the network rather than on string building.

local M = {}

M.target = os.getenv("BENCH_TARGET") or "cachegate"
M.keys = tonumber(os.getenv("BENCH_KEYS") or "10000")
M.prefix = os.getenv("BENCH_PREFIX") or "bench:"
M.ttl = tonumber(os.getenv("BENCH_TTL") or "300")
M.batch = tonumber(os.getenv("BENCH_BATCH") or "10")
M.put_percent = tonumber(os.getenv("BENCH_PUT_PERCENT") or "10")
M.pool = math.min(M.keys, 20000)   -- how many distinct pre-formatted requests per kind

function M.value()
  local path = os.getenv("BENCH_VALUE_FILE")
  if path then
    local f = assert(io.open(path, "rb"))
    local v = f:read("*a")
    f:close()
    return v
  end
  return '{"data":"' .. string.rep("x", 1024 - 11) .. '"}'
end

function M.key(i) return M.prefix .. i end
function M.random_key() return M.key(math.random(0, M.keys - 1)) end
-- The i-th pre-formatted key: every key once when they fit in the pool, else random ones.
function M.nth(i)
  if M.keys <= M.pool then return M.key((i - 1) % M.keys) end
  return M.random_key()
end

function M.get(key)
  if M.target == "webdis" then return wrk.format("GET", "/GET/" .. key) end
  return wrk.format("GET", "/v1/cache/" .. key)
end

-- extra: more request headers (cachegate only), e.g. { ["If-Match"] = tag }.
function M.put(key, value, extra)
  if M.target == "webdis" then
    -- webdis appends a PUT body as the last argument: SETEX key ttl <body>
    return wrk.format("PUT", "/SETEX/" .. key .. "/" .. M.ttl, nil, value)
  end
  local headers = { ["Content-Type"] = "application/json" }
  for name, v in pairs(extra or {}) do headers[name] = v end
  return wrk.format("PUT", "/v1/cache/" .. key .. "?ttl=" .. M.ttl, headers, value)
end

function M.batch_get(keys)
  if M.target == "webdis" then return wrk.format("GET", "/MGET/" .. table.concat(keys, "/")) end
  local quoted = {}
  for i, k in ipairs(keys) do quoted[i] = '"' .. k .. '"' end
  return wrk.format("POST", "/v1/batch/get", { ["Content-Type"] = "application/json" },
                    '{"keys":[' .. table.concat(quoted, ",") .. ']}')
end

-- CRC-16/XMODEM of a string, the checksum of Redis Cluster's hash slots (LuaJIT's bit library).
local bit = require("bit")
local function crc16(s)
  local crc = 0
  for i = 1, #s do
    crc = bit.bxor(crc, bit.lshift(s:byte(i), 8))
    for _ = 1, 8 do
      if bit.band(crc, 0x8000) ~= 0 then
        crc = bit.band(bit.bxor(bit.lshift(crc, 1), 0x1021), 0xffff)
      else
        crc = bit.band(bit.lshift(crc, 1), 0xffff)
      end
    end
  end
  return crc
end

-- The hash slot of a key as Redis Cluster computes it: of its hash tag ({...}, not empty)
-- when it has one.
function M.slot(key)
  local tag = key:match("^[^{]*{([^}]+)}")
  return crc16(tag or key) % 16384
end

-- n pre-formatted requests built by make(i).
function M.prepare(n, make)
  local t = {}
  for i = 1, n do t[i] = make(i) end
  return t
end

function M.seed()
  -- wrk runs init() once per thread; mix in the table address so threads differ.
  local salt = tonumber(tostring({}):match("0x(%x+)") or "0", 16) or 0
  math.randomseed(os.time() + salt % 100000)
  for _ = 1, 10 do math.random() end
end

-- One machine-readable line that bench/run.sh parses (latencies in microseconds).
function M.report(summary, latency, requests)
  local secs = summary.duration / 1e6
  local e = summary.errors
  io.write(string.format(
    "BENCH_RESULT requests=%d duration_s=%.3f rps=%.1f p50_us=%d p90_us=%d p99_us=%d p999_us=%d " ..
    "mean_us=%.1f max_us=%d bytes=%d err_connect=%d err_read=%d err_write=%d err_status=%d err_timeout=%d\n",
    summary.requests, secs, summary.requests / secs,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.mean, latency.max, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout))
end

return M
