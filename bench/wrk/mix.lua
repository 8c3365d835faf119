-- 90/10 GET/PUT mix over random preloaded keys (BENCH_PUT_PERCENT sets the PUT share).
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local B = dofile(dir .. "common.lua")
local gets, puts
function init(args)
  B.seed()
  local value = B.value()
  gets = B.prepare(B.pool, function(i) return B.get(B.nth(i)) end)
  puts = B.prepare(B.pool, function(i) return B.put(B.nth(i), value) end)
end
function request()
  if math.random(100) <= B.put_percent then return puts[math.random(#puts)] end
  return gets[math.random(#gets)]
end
done = B.report
