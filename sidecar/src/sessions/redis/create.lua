-- A new session, with its lifetime. KEYS[1]: the session. ARGV[1]: lifetime in seconds,
-- ARGV[2]: its keys, sealed, ARGV[3]: expires_at (Unix seconds), ARGV[4]: the subject it is
-- bound to, absent for an anonymous session. One script, so no session is ever left without
-- its expiry.
redis.call('HSET', KEYS[1], 'k', ARGV[2], 'e', ARGV[3])
if ARGV[4] then
  redis.call('HSET', KEYS[1], 's', ARGV[4])
end
redis.call('EXPIRE', KEYS[1], ARGV[1])
return 1
