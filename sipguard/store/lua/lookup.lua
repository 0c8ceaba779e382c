-- lookup.lua: every store lookup, rate-limit update, campaign-detector window and PASSporT
-- seen-set check of one call, atomically, in one EVALSHA.
--
-- The contract (sipguard/store/redis.py is its only caller; the blocks run in this order):
-- KEYS:  [1..nd]        meta, lists, ocn, notices (nd = ARGV[1]: 4, or 0 in a Redis Cluster
--                       call that carries keys of other slots only)
--        next nl        one GCRA key per limiter                            (limits block)
--        next nc        one key per campaign detector                       (campaign block)
--        last np        the PASSporT seen-set key, 0 or 1                   (replay block)
--        nl = #KEYS - nd - nc - np
-- ARGV:  [1..9]         nd, trunk_rmd, trunk_frn, caller digits, caller nanp10, trunk, spc,
--                       callee digits, now
--        then 2 per limiter key: emission interval, burst
--        then 4 per detector key: kind, threshold, window (ms), member
--        then 2 when np > 0: the call's hash, the PASSporT's time to live (ms)
--        then, always the last two: nc, np
--        #ARGV = 9 + 2*nl + 4*nc + (np > 0 and 2 or 0) + 2; any other count is refused with an
--        error before anything is written (a caller out of step with this file).
-- Returns 12 strings, every slot always present ("" stands for none):
--        {1 trunk_status, 2 trunk_impl, 3 signer_status, 4 signer_frn, 5 dno "0|1", 6 list,
--         7 list_entry, 8 notice, 9 rmd_snapshot, 10 limited "0|1" per limiter key,
--         11 campaign "0|1" per detector key, 12 replayed "0|1" per seen-set key}
-- Dataset key names derive from KEYS[1] ("<p>:{<p>}:meta"), see sipguard/store/keys.py.
-- With nd = 0 (Redis Cluster: limiter, detector and seen-set keys each in their own slot, one
-- call per key) only that key's block runs.

local nd = tonumber(ARGV[1])
local trunk_rmd, trunk_frn = ARGV[2], ARGV[3]
local caller, caller10, trunk, spc, callee = ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8]
local now_call = tonumber(ARGV[9])
local nc, np = tonumber(ARGV[#ARGV - 1]) or -1, tonumber(ARGV[#ARGV]) or -1
local nl = #KEYS - nd - nc - np
local replay_at = #ARGV - 2 - ((np > 0) and 2 or 0)   -- the replay block's 2 ARGV follow this index
local camp_at = replay_at - 4 * nc                    -- the detectors' 4 ARGV each follow this one
if nc < 0 or np < 0 or nl < 0 or camp_at ~= 9 + 2 * nl then
  return redis.error_reply("lookup.lua: " .. #KEYS .. " KEYS and " .. #ARGV .. " ARGV do not fit the contract")
end
local out = {"", "", "", "", "0", "", "", "", "", "", "", ""}

local function split(value)
  local parts = {}
  for piece in string.gmatch(value .. "|", "([^|]*)|") do parts[#parts + 1] = piece end
  return parts
end

if nd > 0 then
  local meta, lists, ocn, notices = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
  local base = string.sub(meta, 1, -5)
  local m = redis.call("HMGET", meta, "rmd_gen", "rmd_snapshot", "dno_gen")
  local rmd_gen, snapshot, dno_gen = m[1], m[2], m[3]
  local function rmd_find(rmd, frn)
    if not rmd_gen then return nil end
    local v = false
    if rmd ~= "" then v = redis.call("HGET", base .. "rmd:" .. rmd_gen .. ":id", rmd) end
    if not v and frn ~= "" then v = redis.call("HGET", base .. "rmd:" .. rmd_gen .. ":frn", frn) end
    if v then return split(v) end
    return nil
  end
  out[1] = "absent"
  if snapshot then out[9] = snapshot end
  local rec = rmd_find(trunk_rmd, trunk_frn)
  if rec then out[1] = rec[1]; out[2] = rec[2] end
  if spc ~= "" then
    out[3] = "absent"
    local mapped = redis.call("HGET", ocn, spc)
    if mapped then
      local mp = split(mapped)
      out[4] = mp[2]
      local srec = rmd_find(mp[1], mp[2])
      if srec then
        out[3] = srec[1]
        if out[4] == "" then out[4] = srec[4] end
      end
    end
  end
  if caller10 ~= "" and dno_gen then
    local hits = redis.call("SMISMEMBER", base .. "dno:" .. dno_gen, caller10,
      string.sub(caller10, 1, 7), string.sub(caller10, 1, 6), string.sub(caller10, 1, 3))
    for _, h in ipairs(hits) do if h == 1 then out[5] = "1" end end
  end
  -- lists: number, prefixes longest first, trunk, spc; block wins over allow
  local fields = {}
  if caller ~= "" then
    fields[#fields + 1] = "number:" .. caller
    for n = #caller - 1, 1, -1 do fields[#fields + 1] = "prefix:" .. string.sub(caller, 1, n) end
  end
  if trunk ~= "" then fields[#fields + 1] = "trunk:" .. trunk end
  if spc ~= "" then fields[#fields + 1] = "spc:" .. spc end
  if #fields > 0 then
    local vals = redis.call("HMGET", lists, unpack(fields))
    local allow_entry = nil
    for i, v in ipairs(vals) do
      if v then
        local which = string.sub(v, 1, 5)
        if which == "block" then out[6] = "block"; out[7] = fields[i]; break end
        if not allow_entry then allow_entry = fields[i] end
      end
    end
    if out[6] == "" and allow_entry then out[6] = "allow"; out[7] = allow_entry end
  end
  -- Commission-notice rules: all given conditions must match; the smallest ref wins
  local all = redis.call("HGETALL", notices)
  local best = nil
  for i = 1, #all, 2 do
    local n = cjson.decode(all[i + 1])
    local ok = true
    if n.caller and n.caller ~= caller then ok = false end
    if ok and n.caller_prefix and string.sub(caller, 1, #n.caller_prefix) ~= n.caller_prefix then ok = false end
    if ok and n.callee and n.callee ~= callee then ok = false end
    if ok and n.callee_prefix and string.sub(callee, 1, #n.callee_prefix) ~= n.callee_prefix then ok = false end
    if ok and n.trunk and n.trunk ~= trunk then ok = false end
    if ok and n.frn and n.frn ~= trunk_frn then ok = false end
    if ok and n.spc and n.spc ~= spc then ok = false end
    if ok and n.start and now_call < n.start then ok = false end
    if ok and n["end"] and now_call >= n["end"] then ok = false end
    if ok and (best == nil or all[i] < best) then best = all[i] end
  end
  if best then out[8] = best end
end

-- GCRA per limiter, on the server's clock (offset epoch keeps sub-ms precision in a double)
if nl > 0 then
  local t = redis.call("TIME")
  local now = (tonumber(t[1]) - 1700000000) + tonumber(t[2]) / 1000000
  local flags = {}
  for i = 1, nl do
    local key = KEYS[nd + i]
    local interval = tonumber(ARGV[8 + 2 * i])
    local burst = tonumber(ARGV[9 + 2 * i])
    local tat = tonumber(redis.call("GET", key)) or now
    if tat < now then tat = now end
    local new_tat = tat + interval
    if new_tat - burst * interval > now then
      flags[i] = "1"
    else
      flags[i] = "0"
      redis.call("SET", key, string.format("%.6f", new_tat), "PX", math.ceil((new_tat - now) * 1000) + 1)
    end
  end
  out[10] = table.concat(flags)
end

-- ==== campaign detectors (sipguard/detectors.py) ==========================================
-- KEYS[nd+nl+1 .. nd+nl+nc], each with 4 ARGV after camp_at: kind, threshold, window (ms),
-- member. Windows are tumbling, opened by a key's first call (PEXPIRE then).
--   kind "f" (campaign.fanout): a set of distinct callees (integers: an intset, 8 bytes
--        each), not grown past the threshold; "1" once it holds `threshold` callees.
--   kind "b" (campaign.burst): a counter of calls (member unused); "1" from the
--        `threshold`-th call of the window.
local cflags = {}
for i = 1, nc do
  local key = KEYS[nd + nl + i]
  local at = camp_at + 4 * (i - 1)
  local kind, limit, window = ARGV[at + 1], tonumber(ARGV[at + 2]), ARGV[at + 3]
  local n
  if kind == "f" then
    n = redis.call("SCARD", key)
    if n < limit and redis.call("SADD", key, ARGV[at + 4]) == 1 then
      n = n + 1
      if n == 1 then redis.call("PEXPIRE", key, window) end
    end
  else
    n = redis.call("INCR", key)
    if n == 1 then redis.call("PEXPIRE", key, window) end
  end
  cflags[i] = (n >= limit) and "1" or "0"
end
out[11] = table.concat(cflags)
-- ==== end of campaign detectors ===========================================================

-- ==== PASSporT replay (sipguard/store/replay.py) ==========================================
-- KEYS[#KEYS-np+1 .. #KEYS], with the 2 ARGV after replay_at: the call's hash, ttl (ms).
-- The seen-set: key -> the hash of the Call-ID that first carried this verified signature,
-- expiring when the PASSporT goes stale. Another Call-ID within that time is a replay; the
-- same Call-ID (a retransmission) is not.
local replayed = {}
if np > 0 then
  local call, ttl = ARGV[replay_at + 1], ARGV[replay_at + 2]
  for i = 1, np do
    local key = KEYS[nd + nl + nc + i]
    local first = redis.call("GET", key)
    if first then
      replayed[i] = (first == call) and "0" or "1"
    else
      redis.call("SET", key, call, "PX", ttl)
      replayed[i] = "0"
    end
  end
end
out[12] = table.concat(replayed)
-- ==== end of PASSporT replay ==============================================================
return out
