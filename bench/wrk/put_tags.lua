-- PUT of the 1 KiB JSON value with ?ttl=BENCH_TTL and three tags (Cache-Tag) over random
-- preloaded keys; the tags come from small pools, so indexes hold many keys each.
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local B = dofile(dir .. "common.lua")
local reqs
function init(args)
  B.seed()
  local value = B.value()
  reqs = B.prepare(B.pool, function(i)
    local tags = string.format("product:%d, category:%d, bench", i % 1000, i % 20)
    return wrk.format("PUT", "/v1/cache/" .. B.nth(i) .. "?ttl=" .. B.ttl,
                      { ["Content-Type"] = "application/json", ["Cache-Tag"] = tags }, value)
  end)
end
function request() return reqs[math.random(#reqs)] end
done = B.report
