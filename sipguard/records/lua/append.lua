-- append.lua: call records into the stream, idempotent on (writer, seq) whatever the order.
-- KEYS: stream, late, seqs, writers, hw (the high-water hash of earlier versions: read, then
-- dropped), tm_since (the first minute the trunk roll-ups hold whole), moved (every entry
-- whose ID had to differ from its record's ms, by record ms: with it a time range is exact).
-- ARGV: minid ms, late ms, now ms, max ranges, the roll-up keys' prefix, then per record:
-- writer, seq, record ms, json, trunk group (JSON; '' without a trunk), record time (text).
-- Returns the number of entries added (the others were stored before: a spool file flushed twice).
--
-- Trunk roll-ups: each record added with a trunk counts in its minute's hash (prefix ..
-- minute, minute = floor(ms / 60000)) under its group, and "last:" .. group keeps the
-- greatest record time; a batch's records are summed first, one HINCRBY per minute and
-- group. The hash expires with the records of its minute (the retention).
-- The trunk score refresh reads whole minutes from there (records/redis_stream.py).
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
local tm_prefix = ARGV[5]
local STRIDE = 6

-- check everything first: an error after an XADD would leave a half-written batch
for i = 6, #ARGV, STRIDE do
  local seq, ms = tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2])
  if seq == nil or seq < 1 or seq % 1 ~= 0 or seq > 9007199254740991 or ms == nil
      or (ARGV[i + 4] ~= '' and tonumber(ARGV[i + 5]) == nil) then
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
local minutes = {}   -- roll-up key -> {minute, {group -> {calls, last time text, last time}}}
for i = 6, #ARGV, STRIDE do
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
      redis.call('ZADD', KEYS[7], ms, ok)   -- every entry whose ID is not its record's ms
    end
    add(ranges, at, seq)
    added = added + 1
    local group = ARGV[i + 4]
    if group ~= '' then   -- counted here, written once per minute and group below
      local minute = math.floor(ms / 60000)
      local k = tm_prefix .. minute
      local m = minutes[k]
      if m == nil then
        m = {minute, {}}
        minutes[k] = m
      end
      local g, t = m[2][group], tonumber(ARGV[i + 5])
      if g == nil then
        m[2][group] = {1, ARGV[i + 5], t}
      else
        g[1] = g[1] + 1
        if t > g[3] then g[2], g[3] = ARGV[i + 5], t end
      end
    end
  end
end

redis.call('SET', KEYS[6], math.floor(tonumber(now_ms) / 60000) + 1, 'NX')
for k, m in pairs(minutes) do
  for group, g in pairs(m[2]) do
    redis.call('HINCRBY', k, group, g[1])
    local last = redis.call('HGET', k, 'last:' .. group)
    if not last or g[3] > tonumber(last) then redis.call('HSET', k, 'last:' .. group, g[2]) end
  end
  if minid > 0 then redis.call('PEXPIREAT', k, (m[1] + 1) * 60000 + (tonumber(now_ms) - minid)) end
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
  redis.call('ZREMRANGEBYSCORE', KEYS[7], '-inf', '(' .. minid)
  local old = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', '(' .. minid)
  for _, w in ipairs(old) do
    redis.call('HDEL', KEYS[3], w)
    redis.call('HDEL', KEYS[5], w)
  end
  redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', '(' .. minid)
end
return added
