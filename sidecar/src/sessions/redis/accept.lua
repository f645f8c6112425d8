-- Section 3's replay window and the request count of one session, checked and updated at once:
-- of two replicas that decrypted requests with one seq, only the first here goes on.
-- KEYS[1]: the session. ARGV[1]: seq (1 .. 2^53-1, exact in Lua's doubles). ARGV[2]: the limit.
-- Returns 1 accepted, 0 replayed, -1 exhausted (the session is ended), -2 no such session.
--
-- The window is a ring of 1024 bits in field `w`: bit (seq mod 1024) stands for seq when
-- H-1023 <= seq <= H, H being field `h`. When H grows, the bits of the seqs that enter the
-- window are cleared: they stood for seqs 1024 lower, which leave it.
local key = KEYS[1]
local seq = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local state = redis.call('HMGET', key, 'k', 'h', 'w', 'n')
if not state[1] then
  return -2
end
local count = tonumber(state[4] or '0')
if count >= limit then
  redis.call('DEL', key)
  return -1
end
local highest = tonumber(state[2] or '0')
local ring = { string.byte(state[3] or string.rep('\0', 128), 1, 128) }

local function byte_and_mask(s)
  local position = s % 1024
  return math.floor(position / 8) + 1, bit.lshift(1, position % 8)
end

if seq > highest then
  if seq - highest >= 1024 then
    for i = 1, 128 do
      ring[i] = 0
    end
  else
    for s = highest + 1, seq do
      local i, mask = byte_and_mask(s)
      ring[i] = bit.band(ring[i], bit.bnot(mask))
    end
  end
  highest = seq
else
  if highest - seq >= 1024 then
    return 0
  end
  local i, mask = byte_and_mask(seq)
  if bit.band(ring[i], mask) ~= 0 then
    return 0
  end
end
local i, mask = byte_and_mask(seq)
ring[i] = bit.bor(ring[i], mask)
redis.call('HSET', key, 'h', highest, 'w', string.char(unpack(ring)), 'n', count + 1)
return 1
