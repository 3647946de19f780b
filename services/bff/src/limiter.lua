-- The token bucket of bucket.rs (`Policy::take`), step for step, run inside
-- Redis so that every BFF instance updates one session's bucket atomically.
-- Integers only (micro-tokens, microseconds): exact in Lua's doubles below
-- 2^53, which the capacity and refill bounds guarantee.
--
-- KEYS[1]  the session's bucket (a hash: level, at)
-- ARGV[1]  capacity, whole tokens
-- ARGV[2]  refill, tokens per second (= micro-tokens per µs)
-- ARGV[3]  now in µs, or "" for Redis's own clock (shared by all instances)
-- returns  {allowed 0|1, level, retry_after_us, full_after_us}
local MICRO = 1000000
local full = tonumber(ARGV[1]) * MICRO
local rate = tonumber(ARGV[2])
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

local saved = redis.call('HMGET', KEYS[1], 'level', 'at')
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

-- 2. take a whole token if there is one; 3. else say when there will be
local allowed = 0
local retry_after = 0
if level >= MICRO then
  level = level - MICRO
  allowed = 1
else
  retry_after = ceil_div(MICRO - level, rate)
end
local full_after = ceil_div(full - level, rate)

-- '%.0f': tostring would print 16-digit numbers as 1.7e+15 and lose digits.
redis.call('HSET', KEYS[1], 'level', string.format('%.0f', level), 'at', string.format('%.0f', at))
-- A full bucket is the same as no key: let idle sessions expire.
redis.call('PEXPIRE', KEYS[1], math.floor(full_after / 1000) + 1000)
return {allowed, level, retry_after, full_after}
