-- PUT of the 1 KiB JSON value with ?ttl=BENCH_TTL over random preloaded keys.
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local B = dofile(dir .. "common.lua")
local reqs
function init(args)
  B.seed()
  local value = B.value()
  reqs = B.prepare(B.pool, function(i) return B.put(B.nth(i), value) end)
end
function request() return reqs[math.random(#reqs)] end
done = B.report
