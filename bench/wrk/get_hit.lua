-- GET of random preloaded keys (every request a hit).
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local B = dofile(dir .. "common.lua")
local reqs
function init(args)
  B.seed()
  reqs = B.prepare(B.pool, function(i) return B.get(B.nth(i)) end)
end
function request() return reqs[math.random(#reqs)] end
done = B.report
