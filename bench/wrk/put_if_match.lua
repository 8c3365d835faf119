-- Conditional PUT (compare-and-set): the benchmark's value written back over random preloaded
-- keys with If-Match: BENCH_IF_MATCH, the ETag of that same value. The bytes never change, so
-- every request's condition holds (204); a 412 would count as an error.
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local B = dofile(dir .. "common.lua")
local reqs
function init(args)
  B.seed()
  local value = B.value()
  local tag = assert(os.getenv("BENCH_IF_MATCH"), "BENCH_IF_MATCH (the value's ETag) is not set")
  reqs = B.prepare(B.pool, function(i) return B.put(B.nth(i), value, { ["If-Match"] = tag }) end)
end
function request() return reqs[math.random(#reqs)] end
done = B.report
