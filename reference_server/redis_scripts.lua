-- Lua scripts of the Redis store (reference_server/stores/redis_store.py): one script per state
-- change, so each change is atomic. Every script but `load` starts with the prelude.
-- ARGV: 1 key prefix, 2 sale id the caller priced with ('*' = current), 3 now,
-- 4 group tier sizes ("2,3"), 5 group failure policy, 6.. the script's own arguments.
-- Keys: <prefix>:sale (hash, holds `gen`) and <prefix>:<gen>:... for everything of that sale,
-- so loading a sale switches to fresh keys atomically. Not for Redis Cluster (keys are built
-- inside the scripts).
-- Replies: {'ok', ...} (order scripts: {'ok', id, field, value, ...}), {'err', code, message} or {'stale'} (sale reloaded: price again).

-- @prelude
local P, GEN, NOW = ARGV[1], ARGV[2], ARGV[3]
local TIERS, POLICY = ARGV[4], ARGV[5]
local sale_now = redis.call('HMGET', P .. ':sale', 'gen', 'sale_id')
local cur = sale_now[1]
if not cur then return {'err', 'no_sale', 'no sale is loaded (POST /v1/admin/sale)'} end
if GEN ~= '*' and (sale_now[2] or '') ~= GEN then return {'stale'} end
local K = P .. ':' .. cur .. ':'
local function arg(i) return ARGV[5 + i] end

-- One movement more in an order's JSON list; `seq` comes from the sale-wide counter.
local function move_json(kind, q, seq)
  return '{"kind":"' .. kind .. '","quantity":' .. q .. ',"at":' .. NOW .. ',"seq":' .. seq .. '}'
end

local function add_move(json, kind, q)
  return string.sub(json, 1, -2) .. ',' .. move_json(kind, q, redis.call('INCR', K .. 'seq')) .. ']'
end

local function status_count(from, to)
  if from then redis.call('HINCRBY', K .. 'counts', 'o:' .. from, -1) end
  redis.call('HINCRBY', K .. 'counts', 'o:' .. to, 1)
end

-- Return a reserved order's stock, once: the status check is the guard.
local function release(oid, status)
  local ok = K .. 'order:' .. oid
  local o = redis.call('HMGET', ok, 'status', 'quantity', 'sku_id', 'user_id', 'group_id',
                       'movements')
  if o[1] ~= 'reserved' then return 0 end
  local q = tonumber(o[2])
  redis.call('HSET', ok, 'status', status, 'closed_at', NOW,
             'movements', add_move(o[6], 'release', q))
  local sk = K .. 'sku:' .. o[3]
  redis.call('HINCRBY', sk, 'reserved', -q)
  redis.call('HINCRBY', sk, 'available', q)
  redis.call('HINCRBY', sk, 'released', q)
  redis.call('HINCRBY', K .. 'units:' .. o[4], o[3], -q)
  if o[5] ~= '' then redis.call('HINCRBY', K .. 'group:' .. o[5], 'members', -1) end
  redis.call('ZREM', K .. 'due', oid)
  status_count('reserved', status)
  return 1
end

local function append(out, items)
  table.insert(out, #items)
  for _, v in ipairs(items) do table.insert(out, v) end
end

-- Success reply for an order: {'ok', id, n, its hash as n flat items}; with `with_group`, then
-- {m, the group's hash as m items, k, its k order ids}: one atomic snapshot, saving reads that
-- a reload in between could break.
local function order_reply(oid, with_group)
  local out = {'ok', oid}
  append(out, redis.call('HGETALL', K .. 'order:' .. oid))
  if with_group then
    local gid = redis.call('HGET', K .. 'order:' .. oid, 'group_id')
    append(out, redis.call('HGETALL', K .. 'group:' .. gid))
    append(out, redis.call('LRANGE', K .. 'gorders:' .. gid, 0, -1))
  end
  return out
end

local function tier_reached(n)
  local best = nil
  for s in string.gmatch(TIERS, '%d+') do
    if n >= tonumber(s) then best = s end
  end
  return best
end

-- Idempotency inside the state change (Store.once): ARGV from `at` on are user, key, request
-- fingerprint, stale-after and keep-for seconds. `idem_check` answers a key already used (replay,
-- mismatch, in flight) before anything changes; `idem_done` records the script's reply as the
-- key's answer in the same atomic step as the change (one round trip per request: the caller
-- renders a replay from the recorded reply as it rendered the first answer).
local function idem_key(at) return K .. 'idem:' .. ARGV[at] .. ':' .. ARGV[at + 1] end

local function idem_check(at)
  if not ARGV[at + 2] or ARGV[at + 2] == '' then return nil end
  local r = redis.call('HMGET', idem_key(at), 'fingerprint', 'state', 'status', 'body',
                       'started_at')
  if not r[1] or tonumber(r[5]) < tonumber(NOW) - tonumber(ARGV[at + 4]) then return nil end
  if r[1] ~= ARGV[at + 2] then return {'ok', 'idem', 'mismatch'} end
  if r[2] == 'done' then
    local reply = redis.call('HGET', idem_key(at), 'reply')
    return {'ok', 'idem', 'replay', r[3], r[4], reply or ''}
  end
  if tonumber(r[5]) >= tonumber(NOW) - tonumber(ARGV[at + 3]) then
    return {'ok', 'idem', 'in_flight'}
  end
  return nil  -- a stale in-flight marker (crashed worker): taken over
end

local function idem_done(at, reply)
  if ARGV[at + 2] and ARGV[at + 2] ~= '' then
    local ik = idem_key(at)
    redis.call('DEL', ik)
    redis.call('HSET', ik, 'fingerprint', ARGV[at + 2], 'state', 'done', 'status', 201,
               'body', '', 'reply', cjson.encode(reply), 'started_at', NOW)
    redis.call('EXPIRE', ik, math.ceil(tonumber(ARGV[at + 4])) + 60)
  end
  return reply
end

-- Complete or fail an open group (CONTRACT.md, "Group").
local function close_group(gid)
  local gk = K .. 'group:' .. gid
  local g = redis.call('HMGET', gk, 'status', 'paid_members')
  if g[1] ~= 'open' then return 0 end
  local ids = redis.call('LRANGE', K .. 'gorders:' .. gid, 0, -1)
  local tier = tier_reached(tonumber(g[2]))
  for _, oid in ipairs(ids) do release(oid, 'cancelled') end
  for _, oid in ipairs(ids) do
    local ok = K .. 'order:' .. oid
    local o = redis.call('HMGET', ok, 'status', 'quantity', 'sku_id', 'user_id', 'movements')
    if o[1] == 'paid' then
      if tier then
        redis.call('HSET', ok, 'amount', redis.call('HGET', ok, 'p:' .. tier))
      elseif POLICY == 'fallback_price' then
        redis.call('HSET', ok, 'amount', redis.call('HGET', ok, 'p:fallback'))
      else
        local q = tonumber(o[2])
        redis.call('HSET', ok, 'status', 'refunded', 'closed_at', NOW,
                   'movements', add_move(o[5], 'refund', q))
        local sk = K .. 'sku:' .. o[3]
        redis.call('HINCRBY', sk, 'sold', -q)
        redis.call('HINCRBY', sk, 'available', q)
        redis.call('HINCRBY', sk, 'refunded', q)
        redis.call('HINCRBY', K .. 'units:' .. o[4], o[3], -q)
        status_count('paid', 'refunded')
        -- a refunded order is no longer an active member (CONTRACT.md, "Group")
        redis.call('HINCRBY', gk, 'members', -1)
        redis.call('HINCRBY', gk, 'paid_members', -1)
      end
    end
  end
  local status = tier and 'completed' or 'failed'
  redis.call('HSET', gk, 'status', status, 'tier_reached', tier or '', 'closed_at', NOW)
  redis.call('ZREM', K .. 'gdue', gid)
  redis.call('HINCRBY', K .. 'counts', 'g:open', -1)
  redis.call('HINCRBY', K .. 'counts', 'g:' .. status, 1)
  if tier then redis.call('HINCRBY', K .. 'counts', 'leader_rewards', 1) end
  return 1
end

-- @script reserve
-- 1 user 2 sku 3 quantity 4 idempotency key 5 new order id 6 group to join 7 coupon
-- 8 per-user limit 9 expires_at 10 amount 11 list amount 12 prices "2:4000,fallback:5000"
-- 13 new group id (open a group) 14 its deadline 15 top size 16 min size
-- 17 request fingerprint (a retry under the same key must be the same request)
-- 18.. optional idempotency record (idem_check): user, key, fingerprint, stale, keep
local user, sku, q, key, oid = arg(1), arg(2), tonumber(arg(3)), arg(4), arg(5)
local gid, coupon, open_gid = arg(6), arg(7), arg(13)
local IDEM = 5 + 18
local used = idem_check(IDEM)
if used then return used end
local prior = redis.call('GET', K .. 'okey:' .. user .. ':' .. key)
if prior then
  local fp = redis.call('HGET', K .. 'order:' .. prior, 'fp')
  if fp and fp ~= '' and arg(17) ~= '' and fp ~= arg(17) then
    return {'err', 'idempotency_key_reused', 'this Idempotency-Key was used for a different request'}
  end
  return idem_done(IDEM, order_reply(prior, open_gid ~= ''))
end
local sk = K .. 'sku:' .. sku
if redis.call('EXISTS', sk) == 0 then return {'err', 'not_found', 'no SKU ' .. sku} end
if gid ~= '' then
  local g = redis.call('HMGET', K .. 'group:' .. gid, 'status', 'sku_id', 'deadline', 'members',
                       'top_size')
  if not g[1] then return {'err', 'not_found', 'no group ' .. gid} end
  if g[2] ~= sku then return {'err', 'invalid', 'sku_id: group ' .. gid .. ' buys ' .. g[2]} end
  if g[1] ~= 'open' or tonumber(g[3]) <= tonumber(NOW) then
    return {'err', 'group_closed', 'group ' .. gid .. ' is ' .. g[1] .. ' or past its deadline'}
  end
  if tonumber(g[4]) >= tonumber(g[5]) then
    return {'err', 'group_full', 'group ' .. gid .. ' has ' .. g[5] .. ' members'}
  end
end
if tonumber(redis.call('HGET', sk, 'available')) < q then
  return {'err', 'sold_out', sku .. ': not enough stock for ' .. q}
end
local uk = K .. 'units:' .. user
if tonumber(redis.call('HGET', uk, sku) or '0') + q > tonumber(arg(8)) then
  return {'err', 'limit_reached', sku .. ': at most ' .. arg(8) ..
          ' unit(s) per user, reserved and paid together'}
end
if coupon ~= '' then
  local claim = redis.call('LPOP', K .. 'unused:' .. user .. ':' .. coupon)
  if not claim then
    return {'err', 'coupon_unavailable', 'no unused ' .. coupon .. ' coupon claimed by ' .. user}
  end
  redis.call('HSET', K .. 'claim:' .. claim, 'order_id', oid)
end
if open_gid ~= '' then
  gid = open_gid
  local gseq = redis.call('INCR', K .. 'seq')
  redis.call('HSET', K .. 'group:' .. gid, 'group_id', gid, 'sku_id', sku, 'leader_id', user,
             'status', 'open', 'deadline', arg(14), 'members', 0, 'paid_members', 0,
             'top_size', arg(15), 'min_size', arg(16), 'tier_reached', '', 'closed_at', '',
             'seq', gseq)
  redis.call('ZADD', K .. 'groups', gseq, gid)
  redis.call('ZADD', K .. 'gdue', arg(14), gid)
  redis.call('HINCRBY', K .. 'counts', 'g:open', 1)
end
local seq = redis.call('INCR', K .. 'seq')
local ok = K .. 'order:' .. oid
redis.call('HSET', ok, 'order_id', oid, 'user_id', user, 'sku_id', sku, 'quantity', q,
           'status', 'reserved', 'group_id', gid, 'coupon_id', coupon, 'idempotency_key', key,
           'amount', arg(10), 'list_amount', arg(11), 'gift', 0, 'created_at', NOW,
           'expires_at', arg(9), 'paid_at', '', 'closed_at', '', 'seq', seq, 'paid_seq', '', 'fp', arg(17),
           'movements', '[' .. move_json('reserve', q, seq) .. ']')
for name, val in string.gmatch(arg(12), '([%w_]+):(%d+)') do
  redis.call('HSET', ok, 'p:' .. name, val)
end
redis.call('ZADD', K .. 'orders', seq, oid)
redis.call('ZADD', K .. 'due', arg(9), oid)
redis.call('SET', K .. 'okey:' .. user .. ':' .. key, oid)
redis.call('HINCRBY', sk, 'available', -q)
redis.call('HINCRBY', sk, 'reserved', q)
redis.call('HINCRBY', uk, sku, q)
if gid ~= '' then
  redis.call('HINCRBY', K .. 'group:' .. gid, 'members', 1)
  redis.call('RPUSH', K .. 'gorders:' .. gid, oid)
end
status_count(nil, 'reserved')
return idem_done(IDEM, order_reply(oid, open_gid ~= ''))

-- @script pay
-- 1 order id 2 user ('' = anyone) 3 gift for paid orders numbered up to this
local oid = arg(1)
local ok = K .. 'order:' .. oid
local o = redis.call('HMGET', ok, 'status', 'user_id', 'quantity', 'sku_id', 'group_id',
                     'expires_at')
if not o[1] then return {'err', 'not_found', 'no order ' .. oid} end
if arg(2) ~= '' and o[2] ~= arg(2) then
  return {'err', 'forbidden', 'this order belongs to another user'}
end
if o[1] == 'paid' then return order_reply(oid, false) end
if o[1] ~= 'reserved' then return {'err', 'order_closed', 'order ' .. oid .. ' is ' .. o[1]} end
if tonumber(o[6]) <= tonumber(NOW) then
  release(oid, 'expired')
  return {'err', 'order_closed', 'order ' .. oid .. ' expired unpaid'}
end
if o[5] ~= '' then
  local g = redis.call('HMGET', K .. 'group:' .. o[5], 'status', 'deadline')
  if g[1] == 'open' and tonumber(g[2]) <= tonumber(NOW) then
    -- too late to count: the group closes as of its deadline (releasing this order)
    close_group(o[5])
    return {'err', 'order_closed', 'order ' .. oid .. ': group ' .. o[5] ..
            ' passed its deadline'}
  end
end
local q = tonumber(o[3])
redis.call('HSET', ok, 'status', 'paid', 'paid_at', NOW)
redis.call('ZREM', K .. 'due', oid)
local sk = K .. 'sku:' .. o[4]
redis.call('HINCRBY', sk, 'reserved', -q)
redis.call('HINCRBY', sk, 'sold', q)
local seq = redis.call('HINCRBY', K .. 'counts', 'paid_seq', 1)
redis.call('HSET', ok, 'paid_seq', seq)
if seq <= tonumber(arg(3)) then redis.call('HSET', ok, 'gift', 1) end
status_count('reserved', 'paid')
if o[5] ~= '' then
  local gk = K .. 'group:' .. o[5]
  local paid = redis.call('HINCRBY', gk, 'paid_members', 1)
  if paid >= tonumber(redis.call('HGET', gk, 'top_size')) then close_group(o[5]) end
end
return order_reply(oid, false)

-- @script cancel
-- 1 order id 2 user
local oid = arg(1)
local o = redis.call('HMGET', K .. 'order:' .. oid, 'status', 'user_id', 'expires_at')
if not o[1] then return {'err', 'not_found', 'no order ' .. oid} end
if arg(2) ~= '' and o[2] ~= arg(2) then
  return {'err', 'forbidden', 'this order belongs to another user'}
end
if o[1] == 'cancelled' then return order_reply(oid, false) end
if o[1] == 'paid' then
  return {'err', 'order_closed', 'order ' .. oid .. ' is paid; paid orders cannot be cancelled'}
end
if o[1] ~= 'reserved' then return {'err', 'order_closed', 'order ' .. oid .. ' is ' .. o[1]} end
if tonumber(o[3]) <= tonumber(NOW) then
  release(oid, 'expired')
  return {'err', 'order_closed', 'order ' .. oid .. ' expired unpaid'}
end
release(oid, 'cancelled')
return order_reply(oid, false)

-- @script expire
-- every due order and group (at most 1 argument: batch size); returns counts done
local n = tonumber(arg(1))
local orders = redis.call('ZRANGEBYSCORE', K .. 'due', '-inf', NOW, 'LIMIT', 0, n)
local expired, closed = 0, 0
for _, oid in ipairs(orders) do expired = expired + release(oid, 'expired') end
local groups = redis.call('ZRANGEBYSCORE', K .. 'gdue', '-inf', NOW, 'LIMIT', 0, n)
for _, gid in ipairs(groups) do closed = closed + close_group(gid) end
return {'ok', tostring(expired), tostring(closed)}

-- @script claim
-- 1 coupon 2 user 3 idempotency key 4 new claim id; 5.. optional idempotency record
local coupon, user, key, cid = arg(1), arg(2), arg(3), arg(4)
local IDEM = 5 + 5
local used = idem_check(IDEM)
if used then return used end
local prior = redis.call('GET', K .. 'ckey:' .. user .. ':' .. key)
if prior then
  local was = redis.call('HGET', K .. 'claim:' .. prior, 'coupon_id')
  if was ~= coupon then
    return {'err', 'idempotency_key_reused', 'this Idempotency-Key was used to claim coupon ' .. was}
  end
  return idem_done(IDEM, {'ok', unpack(redis.call('HGETALL', K .. 'claim:' .. prior))})
end
local ck = K .. 'coupon:' .. coupon
local c = redis.call('HMGET', ck, 'pool', 'issued', 'per_user')
if not c[1] then return {'err', 'not_found', 'no coupon ' .. coupon} end
if tonumber(c[2]) >= tonumber(c[1]) then
  return {'err', 'coupon_exhausted', 'the ' .. coupon .. ' pool is empty'}
end
local cu = K .. 'cu:' .. coupon
if tonumber(redis.call('HGET', cu, user) or '0') >= tonumber(c[3]) then
  return {'err', 'limit_reached', coupon .. ': at most ' .. c[3] .. ' per user'}
end
redis.call('HINCRBY', ck, 'issued', 1)
redis.call('HINCRBY', cu, user, 1)
local seq = redis.call('INCR', K .. 'seq')
redis.call('HSET', K .. 'claim:' .. cid, 'claim_id', cid, 'coupon_id', coupon, 'user_id', user,
           'claimed_at', NOW, 'order_id', '', 'seq', seq, 'idempotency_key', key)
redis.call('ZADD', K .. 'claims', seq, cid)
redis.call('RPUSH', K .. 'unused:' .. user .. ':' .. coupon, cid)
redis.call('SET', K .. 'ckey:' .. user .. ':' .. key, cid)
return idem_done(IDEM, {'ok', unpack(redis.call('HGETALL', K .. 'claim:' .. cid))})

-- @script idem_begin
-- 1 user 2 key 3 request fingerprint 4 stale after (seconds) 5 keep records (seconds)
local ik = K .. 'idem:' .. arg(1) .. ':' .. arg(2)
local r = redis.call('HMGET', ik, 'fingerprint', 'state', 'status', 'body', 'started_at')
if not r[1] or tonumber(r[5]) < tonumber(NOW) - tonumber(arg(5)) then
  redis.call('DEL', ik)
  redis.call('HSET', ik, 'fingerprint', arg(3), 'state', 'in_flight', 'started_at', NOW)
  redis.call('EXPIRE', ik, math.ceil(tonumber(arg(5))) + 60)
  return {'ok', 'new'}
end
if r[1] ~= arg(3) then return {'ok', 'mismatch'} end
if r[2] == 'done' then return {'ok', 'replay', r[3], r[4]} end
if tonumber(r[5]) < tonumber(NOW) - tonumber(arg(4)) then
  redis.call('HSET', ik, 'started_at', NOW)
  return {'ok', 'new'}
end
return {'ok', 'in_flight'}

-- @script idem_finish
-- 1 user 2 key 3 status 4 body
local ik = K .. 'idem:' .. arg(1) .. ':' .. arg(2)
if redis.call('EXISTS', ik) == 1 then
  redis.call('HSET', ik, 'state', 'done', 'status', arg(3), 'body', arg(4))
end
return {'ok'}

-- @script idem_put
-- 1 user 2 key 3 fingerprint 4 status 5 body 6 keep (seconds): record a refusal as the key's
-- answer unless the key already has a record
local ik = K .. 'idem:' .. arg(1) .. ':' .. arg(2)
if redis.call('HGET', ik, 'state') ~= 'done' then
  redis.call('HSET', ik, 'fingerprint', arg(3), 'state', 'done', 'status', arg(4), 'body', arg(5),
             'started_at', NOW)
  redis.call('EXPIRE', ik, math.ceil(tonumber(arg(6))) + 60)
end
return {'ok'}

-- @script idem_abort
-- 1 user 2 key
local ik = K .. 'idem:' .. arg(1) .. ':' .. arg(2)
if redis.call('HGET', ik, 'state') == 'in_flight' then redis.call('DEL', ik) end
return {'ok'}

-- @load
-- ARGV: 1 prefix 2 only if absent ('1') 3 fingerprint 4 campaign JSON 5 start
-- 6 payment timeout 7 group window 8 new sale id 9 number of SKUs, then (id, stock) per SKU,
-- then (id, pool, per_user) per coupon. Returns the new generation, or 0 if kept.
local P = ARGV[1]
local sale = P .. ':sale'
if ARGV[2] == '1' and redis.call('HGET', sale, 'fingerprint') == ARGV[3] then return 0 end
local gen = redis.call('HINCRBY', sale, 'gen', 1)
redis.call('HSET', sale, 'fingerprint', ARGV[3], 'campaign', ARGV[4], 'start', ARGV[5],
           'payment_timeout', ARGV[6], 'group_window', ARGV[7], 'sale_id', ARGV[8])
local K = P .. ':' .. gen .. ':'
local i = 10
for _ = 1, tonumber(ARGV[9]) do
  redis.call('HSET', K .. 'sku:' .. ARGV[i], 'initial', ARGV[i + 1], 'available', ARGV[i + 1],
             'reserved', 0, 'sold', 0, 'released', 0, 'refunded', 0)
  i = i + 2
end
while i <= #ARGV do
  redis.call('HSET', K .. 'coupon:' .. ARGV[i], 'pool', ARGV[i + 1], 'issued', 0,
             'per_user', ARGV[i + 2])
  i = i + 3
end
return gen
