-- The token bucket of bucket.rs, run inside Redis so that every BFF
-- instance updates a bucket atomically: `Policy::take_n` (refill, then as
-- many whole tokens as requests, while they last), step for step, for a
-- batch of requests in one call, and the bearer-token denylist checked in
-- the same call (a revoked token takes no token). Integers only
-- (micro-tokens, microseconds): exact in Lua's doubles below 2^53, which the
-- capacity and refill bounds guarantee.
--
-- KEYS[1..B]   the batch's buckets (each a hash: level, at), distinct
-- ARGV[1]      capacity, whole tokens
-- ARGV[2]      refill, tokens per second (= micro-tokens per µs)
-- ARGV[3]      now in µs, or "" for Redis's own clock (shared by all instances)
-- ARGV[4]      D, then ARGV[5..4+D] the denylist keys (identity's
--              `identity:revoked:<jti>`), distinct. Not in KEYS: Redis's ACL
--              would then ask for write access to them, and the BFF may
--              only read identity's keys (EXISTS is checked as a read).
-- ARGV[5+D..]  per request, in arrival order, three numbers: its bucket
--              (1..B), its denylist key (1..D, or 0 for none), and the
--              tokens its BFF would lease ahead on that bucket (0: none)
-- returns      {level_1, granted_1, leased_1, …, level_B, granted_B,
--              leased_B, revoked_1, …}: per bucket the level after the
--              refill and before any take (`Batch::level`), how many of its
--              requests got a token (`Batch::granted`, the first ones), and
--              how many tokens more were leased to the calling BFF; per
--              request 1 if its token is revoked (it took nothing), else 0
--
-- A lease is granted only out of the top half of a bucket: every request
-- on it got its token and at least half the capacity is still left after
-- the lease. Leased tokens leave the bucket here, so the BFFs together
-- never admit more than the bucket holds; below half full, every token is
-- taken by its own request, exactly as without leases.
local MICRO = 1000000
local full = tonumber(ARGV[1]) * MICRO
local rate = tonumber(ARGV[2])
local buckets = #KEYS
local denied = tonumber(ARGV[4])
local now
if ARGV[3] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * MICRO + tonumber(t[2])
else
  now = tonumber(ARGV[3])
end

local function ceil_div(a, b)
  if a <= 0 then return 0 end
  return math.ceil(a / b)
end

-- The denylist first: a revoked request wants no token.
local wanted = {}
local lease = {}
for b = 1, buckets do
  wanted[b] = 0
  lease[b] = 0
end
local revoked = {}
local first = 4 + denied
local requests = (#ARGV - first) / 3
for r = 1, requests do
  local b = tonumber(ARGV[first - 2 + 3 * r])
  local d = tonumber(ARGV[first - 1 + 3 * r])
  local l = tonumber(ARGV[first + 3 * r])
  if d > 0 and redis.call('EXISTS', ARGV[4 + d]) == 1 then
    revoked[r] = 1
  else
    revoked[r] = 0
    wanted[b] = wanted[b] + 1
    if l > lease[b] then lease[b] = l end
  end
end

local out = {}
for b = 1, buckets do
  local saved = redis.call('HMGET', KEYS[b], 'level', 'at')
  local level = tonumber(saved[1])
  local at = tonumber(saved[2])
  if level == nil or at == nil then
    level = full
    at = now
  end
  -- 1. refill for the time since `at`; a clock running backwards refills nothing
  local elapsed = now - at
  if elapsed < 0 then elapsed = 0 end
  if elapsed >= ceil_div(full - level, rate) then
    level = full
  else
    level = math.min(full, level + elapsed * rate)
  end
  if now > at then at = now end
  -- 2. a whole token for each request while they last (3. the rest wait)
  local granted = math.min(wanted[b], math.floor(level / MICRO))
  local left = level - granted * MICRO
  -- 4. a lease, out of the top half only
  local leased = 0
  if lease[b] > 0 and granted == wanted[b]
      and left - lease[b] * MICRO >= math.floor(tonumber(ARGV[1]) / 2) * MICRO then
    leased = lease[b]
    left = left - leased * MICRO
  end
  out[3 * b - 2] = level
  out[3 * b - 1] = granted
  out[3 * b] = leased
  if wanted[b] > 0 then
    -- '%.0f': tostring would print 16-digit numbers as 1.7e+15 and lose digits.
    redis.call('HSET', KEYS[b], 'level', string.format('%.0f', left), 'at', string.format('%.0f', at))
    -- A full bucket is the same as no key: let idle sessions expire.
    redis.call('PEXPIRE', KEYS[b], math.floor(ceil_div(full - left, rate) / 1000) + 1000)
  end
end
for r = 1, requests do out[3 * buckets + r] = revoked[r] end
return out
