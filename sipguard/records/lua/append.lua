-- append.lua: call records into the stream, idempotent on (writer, seq) whatever the order.
-- KEYS: stream, late, seqs, writers, hw (the high-water hash of earlier versions: read, then dropped).
-- ARGV: minid ms, late ms, now ms, max ranges, then per record: writer, seq, record ms, json.
-- Returns the number of entries added (the others were stored before: a spool file flushed twice).
--
-- seqs: hash writer -> the sequence numbers stored for it, as sorted disjoint ranges
-- "1-500,502-900". A gap is a record not stored yet (a spool file still to come, from this
-- writer or from the worker that took a dead writer's files over); it fills whenever that
-- record arrives, in any order -- a high-water mark would skip it. Past max ranges the oldest
-- gap is closed (its records never came: a torn spool line), which bounds the hash's size.

local minid = tonumber(ARGV[1])
local late_ms = tonumber(ARGV[2])
local now_ms = ARGV[3]
local max_ranges = tonumber(ARGV[4])

-- check everything first: an error after an XADD would leave a half-written batch
for i = 5, #ARGV, 4 do
  local seq, ms = tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2])
  if seq == nil or seq < 1 or seq % 1 ~= 0 or seq > 9007199254740991 or ms == nil then
    return redis.error_reply('append.lua: bad sequence number or time for writer ' .. ARGV[i])
  end
end

local sets, legacy = {}, {}

local function load(w)
  local ranges = {}
  local text = redis.call('HGET', KEYS[3], w)
  if text then
    for a, b in string.gmatch(text, '(%d+)-(%d+)') do ranges[#ranges + 1] = {tonumber(a), tonumber(b)} end
  else
    -- a writer of an earlier version delivered its records in order: 1..hw are stored
    local hw = tonumber(redis.call('HGET', KEYS[5], w) or '0')
    if hw and hw > 0 then
      ranges[1] = {1, hw}
      legacy[w] = true
    end
  end
  return ranges
end

-- the position of the first range that starts above seq
local function above(ranges, seq)
  local i = 1
  while ranges[i] and ranges[i][1] <= seq do i = i + 1 end
  return i
end

local function add(ranges, i, seq)
  local before, after = ranges[i - 1], ranges[i]
  if before and before[2] + 1 == seq then
    before[2] = seq
    if after and after[1] == seq + 1 then
      before[2] = after[2]
      table.remove(ranges, i)
    end
  elseif after and after[1] == seq + 1 then
    after[1] = seq
  else
    table.insert(ranges, i, {seq, seq})
  end
  if #ranges > max_ranges then
    ranges[1][2] = ranges[2][2]
    table.remove(ranges, 2)
  end
end

local added = 0
for i = 5, #ARGV, 4 do
  local w, seq, ms, data = ARGV[i], tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2]), ARGV[i + 3]
  local ranges = sets[w]
  if ranges == nil then
    ranges = load(w)
    sets[w] = ranges
  end
  local at = above(ranges, seq)
  local before = ranges[at - 1]
  if before == nil or seq > before[2] then
    local ok = redis.pcall('XADD', KEYS[1], string.format('%d-*', ms), 'r', data)
    if type(ok) == 'table' and ok.err then
      ok = redis.call('XADD', KEYS[1], '*', 'r', data)
      local id_ms = tonumber(string.match(ok, '^(%d+)'))
      if id_ms - ms > late_ms then
        redis.call('ZADD', KEYS[2], ms, ok)
      end
    end
    add(ranges, at, seq)
    added = added + 1
  end
end

for w, ranges in pairs(sets) do
  local parts = {}
  for j, r in ipairs(ranges) do parts[j] = string.format('%d-%d', r[1], r[2]) end
  if #parts > 0 then redis.call('HSET', KEYS[3], w, table.concat(parts, ',')) end
  if legacy[w] then redis.call('HDEL', KEYS[5], w) end
  redis.call('ZADD', KEYS[4], now_ms, w)
end

if minid > 0 then
  redis.call('XTRIM', KEYS[1], 'MINID', '~', minid)
  -- late entries carry IDs newer than their time: expire them by their time, exactly
  local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', '(' .. minid)
  for _, id in ipairs(expired) do redis.call('XDEL', KEYS[1], id) end
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. minid)
  local old = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', '(' .. minid)
  for _, w in ipairs(old) do
    redis.call('HDEL', KEYS[3], w)
    redis.call('HDEL', KEYS[5], w)
  end
  redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', '(' .. minid)
end
return added
