-- Section 2: the authenticated refresh ends the previous session if it is anonymous or bound to
-- the same subject; otherwise, or if it is unknown, it is left alone.
-- KEYS[1]: the previous session. ARGV[1]: the new session's subject. Returns 1 if it ended.
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
local subject = redis.call('HGET', KEYS[1], 's')
if not subject or subject == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
