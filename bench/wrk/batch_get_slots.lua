-- Batch get of BENCH_BATCH (10) random preloaded keys spread over a Redis Cluster: every key of
-- a batch in its own hash slot, and the keys dealt in turn to the three slot ranges that
-- `redis-cli --cluster create` gives three primaries (0-5460, 5461-10922, 10923-16383), so
-- that a batch of 10 reaches every primary (4, 3 and 3 keys) in 10 slots.
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local B = dofile(dir .. "common.lua")
local reqs

local function range_of(slot)
  if slot < 5461 then return 1 elseif slot < 10923 then return 2 else return 3 end
end

function init(args)
  B.seed()
  -- Keys by range, with their slots (computed once).
  local by_range = { {}, {}, {} }
  for i = 0, B.keys - 1 do
    local key = B.key(i)
    local slot = B.slot(key)
    table.insert(by_range[range_of(slot)], { key = key, slot = slot })
  end
  reqs = B.prepare(B.pool, function(i)
    local keys, used = {}, {}
    for j = 1, B.batch do
      local pool = by_range[(j - 1) % 3 + 1]
      local pick, tries = nil, 0
      repeat
        pick, tries = pool[math.random(#pool)], tries + 1
      until not used[pick.slot] or tries > 1000
      assert(not used[pick.slot], "too few keys for BENCH_BATCH keys in distinct slots")
      used[pick.slot] = true
      keys[j] = pick.key
    end
    return B.batch_get(keys)
  end)
end
function request() return reqs[math.random(#reqs)] end
done = B.report
