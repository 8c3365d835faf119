-- Batch get of BENCH_BATCH (10) random preloaded keys: POST /v1/batch/get, or webdis /MGET.
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local B = dofile(dir .. "common.lua")
local reqs
function init(args)
  B.seed()
  reqs = B.prepare(B.pool, function(i)
    local keys = {}
    for j = 1, B.batch do keys[j] = B.random_key() end
    return B.batch_get(keys)
  end)
end
function request() return reqs[math.random(#reqs)] end
done = B.report
