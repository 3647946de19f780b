-- Gives a lease's unused tokens back to their bucket (see limiter.lua):
-- the bucket is refilled to now as a take would, then credited, capped at
-- capacity. A bucket with no key is full, and stays so. Tokens returned
-- were never used to admit a request, so the admitted count stays within
-- the bucket's bound; the cap only ever loses tokens, never makes them.
--
-- KEYS[1]  the bucket (a hash: level, at)
-- ARGV[1]  capacity, whole tokens
-- ARGV[2]  refill, tokens per second (= micro-tokens per µs)
-- ARGV[3]  tokens to give back
-- returns  the level after, in micro-tokens
local MICRO = 1000000
local full = tonumber(ARGV[1]) * MICRO
local rate = tonumber(ARGV[2])
local saved = redis.call('HMGET', KEYS[1], 'level', 'at')
local level = tonumber(saved[1])
local at = tonumber(saved[2])
if level == nil or at == nil then return full end
local t = redis.call('TIME')
local now = tonumber(t[1]) * MICRO + tonumber(t[2])
local elapsed = now - at
if elapsed < 0 then elapsed = 0 end
level = math.min(full, level + elapsed * rate + tonumber(ARGV[3]) * MICRO)
if now > at then at = now end
if level >= full then
  redis.call('DEL', KEYS[1])
  return full
end
redis.call('HSET', KEYS[1], 'level', string.format('%.0f', level), 'at', string.format('%.0f', at))
redis.call('PEXPIRE', KEYS[1], math.floor(math.ceil((full - level) / rate) / 1000) + 1000)
return level
