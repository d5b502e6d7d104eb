-- Server-side functions of the PostgreSQL store (reference_server/stores/postgres.py): the hot
-- path, many requests in one round trip. They do what the Python transaction bodies of
-- stores/sql.py do for a plain reservation (`_once` with `_reserve`: no group, no coupon) and for
-- paying an order that is in no group (`_pay`), statement for statement and in the same lock
-- order. Anything else answers 'fallback' before it writes, and the store runs the Python body.
-- Rule checks and pricing stay above the store: amounts, limits and the gift count come in as
-- arguments. A refusal is 'groupbuy:<code>:<message>' (that request's work rolls back) or
-- recorded as the key's answer, as `records_refusal` says; 'groupbuy:stale' means the request
-- was priced under a sale that is no longer loaded.
-- The names carry the version (`_v2`): a changed body gets a new name, so servers of two
-- versions on one schema each call their own. Installed with CREATE OR REPLACE at store start.

CREATE OR REPLACE FUNCTION gb_reserve_v2(
    p_lock bigint, p_user text, p_key text, p_fp text, p_now float8, p_stale float8,
    p_ttl float8, p_record_lazy boolean, p_sale_id text, p_order_id text, p_sku text,
    p_q integer, p_limit integer, p_amount bigint, p_list_amount bigint, p_prices text,
    p_expires_at float8, p_at text)
RETURNS TABLE (outcome text, status integer, body text, snapshot text)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
  k idem%ROWTYPE;
  o orders%ROWTYPE;
  loaded text;
  seq bigint;
  code text;
  msg text;
  snap text;
BEGIN
  -- a load or reset (exclusive) waits for this change, and this change for one in progress
  PERFORM pg_advisory_xact_lock_shared(p_lock);
  -- the key (`_idem_begin`): a new one in one statement; waits for a concurrent holder
  INSERT INTO idem (user_id, key, fingerprint, state, started_at)
  VALUES (p_user, p_key, p_fp, 'in_flight', p_now) ON CONFLICT DO NOTHING;
  IF NOT FOUND THEN
    SELECT * INTO k FROM idem WHERE user_id = p_user AND key = p_key FOR UPDATE;
    IF NOT FOUND THEN
      RETURN QUERY SELECT 'in_flight', 0, NULL::text, NULL::text;
      RETURN;
    END IF;
    IF k.started_at < p_now - p_ttl THEN  -- expired: start afresh
      UPDATE idem SET fingerprint = p_fp, state = 'in_flight', status = NULL, body = NULL,
                      snapshot = NULL, started_at = p_now
      WHERE user_id = p_user AND key = p_key;
    ELSIF k.fingerprint <> p_fp THEN
      RETURN QUERY SELECT 'mismatch', 0, NULL::text, NULL::text;
      RETURN;
    ELSIF k.state = 'done' THEN
      RETURN QUERY SELECT 'replay', k.status, k.body, k.snapshot;
      RETURN;
    ELSIF k.started_at < p_now - p_stale THEN  -- a crashed worker's marker: take it over
      UPDATE idem SET started_at = p_now WHERE user_id = p_user AND key = p_key;
    ELSE
      RETURN QUERY SELECT 'in_flight', 0, NULL::text, NULL::text;
      RETURN;
    END IF;
  END IF;
  -- an order an earlier attempt under this key committed (`_prior_order`)
  SELECT * INTO o FROM orders WHERE user_id = p_user AND idempotency_key = p_key;
  IF FOUND THEN
    IF coalesce(o.request_fp, '') <> '' AND p_fp <> '' AND o.request_fp <> p_fp THEN
      RAISE EXCEPTION 'groupbuy:idempotency_key_reused:%',
        'this Idempotency-Key was used for a different request';
    END IF;
  ELSE
    SELECT sale_id INTO loaded FROM sale WHERE id = 1;  -- `_check_sale`
    IF NOT FOUND THEN
      code := 'no_sale';
      msg := 'no sale is loaded (POST /v1/admin/sale)';
    ELSIF loaded <> p_sale_id THEN
      RAISE EXCEPTION 'groupbuy:stale';
    ELSE
      -- `_take_stock`: the guarded update; two transactions can never both take the last unit
      UPDATE skus SET available = available - p_q, reserved = reserved + p_q
      WHERE sku_id = p_sku AND available >= p_q;
      IF NOT FOUND THEN
        code := 'sold_out';
        msg := p_sku || ': not enough stock for ' || p_q;
      ELSE
        INSERT INTO user_units AS u (user_id, sku_id, units) VALUES (p_user, p_sku, p_q)
        ON CONFLICT (user_id, sku_id) DO UPDATE SET units = u.units + excluded.units
        WHERE u.units + excluded.units <= p_limit;
        IF NOT FOUND THEN  -- give the units back (the SKU row is already ours)
          UPDATE skus SET available = available + p_q, reserved = reserved - p_q
          WHERE sku_id = p_sku;
          code := 'limit_reached';
          msg := p_sku || ': at most ' || p_limit
                 || ' unit(s) per user, reserved and paid together';
        ELSE
          seq := nextval('move_seq');  -- after the SKU's guarded update: its lock orders them
          INSERT INTO orders (order_id, user_id, sku_id, quantity, status, group_id, coupon_id,
                              idempotency_key, amount, list_amount, prices, created_at,
                              expires_at, movements, request_fp)
          VALUES (p_order_id, p_user, p_sku, p_q, 'reserved', NULL, NULL, p_key, p_amount,
                  p_list_amount, p_prices, p_now, p_expires_at,
                  format('[{"kind": "reserve", "quantity": %s, "at": %s, "seq": %s}]',
                         p_q, p_at, seq),  -- p_at: the time as Python's json writes it
                  p_fp)
          RETURNING * INTO o;
        END IF;
      END IF;
    END IF;
  END IF;
  IF code IS NOT NULL THEN
    IF code <> 'no_sale' AND NOT p_record_lazy THEN  -- retried after expiry: no record
      RAISE EXCEPTION 'groupbuy:%:%', code, msg;
    END IF;
    body := format('{"error": {"code": "%s", "message": %s}}', code, to_json(msg));
    UPDATE idem SET state = 'done', status = 409, body = gb_reserve_v2.body, snapshot = NULL
    WHERE user_id = p_user AND key = p_key;
    RETURN QUERY SELECT 'done', 409, gb_reserve_v2.body, NULL::text;
    RETURN;
  END IF;
  -- the answer is the order as made (or as first made): kept as its row, rendered by the caller
  snap := row_to_json(o)::text;
  UPDATE idem SET state = 'done', status = 201, body = NULL, snapshot = snap
  WHERE user_id = p_user AND key = p_key;
  RETURN QUERY SELECT 'done', 201, NULL::text, snap;
END
$$;

-- Many requests in one call: what the store sends when several wait for a connection. One
-- transaction, so one commit (one WAL flush) for all of them, and a hot SKU's row is locked
-- once per call instead of once per request: a lock on it is held until the commit's flush, so
-- single calls on one SKU queue behind each other's flushes. Requests run in SKU order, so two
-- calls take SKU rows in the same order and do not deadlock each other. A refusal comes back
-- as data (outcome 'raise' with the message as `detail`, or 'unique' with the constraint's
-- name) for the caller to raise. A deadlock or a lost connection aborts the whole call; the
-- caller retries it or answers 503 to each request in it. The caller sends at most 32 requests
-- a call and never the same order (pay) or key (reserve) twice.

-- `gb_reserve_v2` per request, each in its own subtransaction: one that raises rolls back
-- alone (past 64 subtransactions a transaction slows every other backend's snapshots).
CREATE OR REPLACE FUNCTION gb_reserve_many_v2(
    p_lock bigint, p_user text[], p_key text[], p_fp text[], p_now float8[], p_stale float8,
    p_ttl float8, p_record_lazy boolean[], p_sale_id text[], p_order_id text[], p_sku text[],
    p_q integer[], p_limit integer[], p_amount bigint[], p_list_amount bigint[],
    p_prices text[], p_expires_at float8[], p_at text[])
RETURNS TABLE (item integer, outcome text, status integer, body text, snapshot text,
               detail text)
LANGUAGE plpgsql AS $$
DECLARE
  r record;
  n integer;
BEGIN
  FOR n IN SELECT t.n FROM unnest(p_sku) WITH ORDINALITY AS t(sku, n) ORDER BY t.sku, t.n LOOP
    item := n;
    BEGIN
      SELECT * INTO r FROM gb_reserve_v2(p_lock, p_user[n], p_key[n], p_fp[n], p_now[n],
        p_stale, p_ttl, p_record_lazy[n], p_sale_id[n], p_order_id[n], p_sku[n], p_q[n],
        p_limit[n], p_amount[n], p_list_amount[n], p_prices[n], p_expires_at[n], p_at[n]);
      outcome := r.outcome; status := r.status; body := r.body; snapshot := r.snapshot;
      detail := NULL;
    EXCEPTION
      WHEN raise_exception THEN
        outcome := 'raise'; status := 0; body := NULL; snapshot := NULL; detail := SQLERRM;
      WHEN unique_violation THEN
        outcome := 'unique'; status := 0; body := NULL; snapshot := NULL;
        GET STACKED DIAGNOSTICS detail = CONSTRAINT_NAME;
    END;
    RETURN NEXT;
  END LOOP;
END
$$;

-- Paying orders outside a group (`_pay` of stores/sql.py), in the Python body's lock order:
-- each order, then its SKU's row (in SKU order), then the sale's row once for all of them (the
-- dense ranks for the gift), then each order's one new version. An order in a group (a group
-- may complete on payment) or past its deadline answers 'fallback' before anything is written,
-- and the caller runs the Python body. The loaded sale cannot change during the call (the
-- advisory lock), so it is checked once, first.
CREATE OR REPLACE FUNCTION gb_pay_many_v2(
    p_lock bigint, p_order_id text[], p_user text[], p_now float8[], p_sale_id text[],
    p_gift_count bigint[])
RETURNS TABLE (item integer, outcome text, snapshot text, detail text)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
  o orders%ROWTYPE;
  loaded text;
  paying integer[] := '{}';
  rank bigint;
  n integer;
  k integer;
BEGIN
  PERFORM pg_advisory_xact_lock_shared(p_lock);
  SELECT sale_id INTO loaded FROM sale WHERE id = 1;
  FOR n IN SELECT t.n FROM unnest(p_order_id) WITH ORDINALITY AS t(id, n)
           LEFT JOIN orders AS x ON x.order_id = t.id ORDER BY x.sku_id, t.n LOOP
    item := n; outcome := 'raise'; snapshot := NULL; detail := NULL;
    IF loaded IS NULL THEN
      detail := 'groupbuy:no_sale:no sale is loaded (POST /v1/admin/sale)';
    ELSIF loaded <> p_sale_id[n] THEN
      detail := 'groupbuy:stale';
    ELSE
      -- `_owned_order`, locked at once: an order in a group answers 'fallback' without
      -- waiting for anything else, so taking its lock before its group's cannot deadlock
      SELECT * INTO o FROM orders WHERE order_id = p_order_id[n] FOR UPDATE;
      IF NOT FOUND THEN
        detail := format('groupbuy:not_found:no order %s', quote_literal(p_order_id[n]));
      ELSIF p_user[n] <> '' AND o.user_id <> p_user[n] THEN
        detail := 'groupbuy:forbidden:this order belongs to another user';
      ELSIF o.group_id IS NOT NULL OR (o.status = 'reserved' AND o.expires_at <= p_now[n]) THEN
        outcome := 'fallback';  -- a group, or expired: the Python body expires it and refuses
      ELSIF o.status = 'paid' THEN  -- paying twice answers the paid order
        outcome := 'done'; snapshot := row_to_json(o)::text;
      ELSIF o.status <> 'reserved' THEN
        detail := format('groupbuy:order_closed:order %s is %s', p_order_id[n], o.status);
      ELSE
        UPDATE skus SET reserved = reserved - o.quantity, sold = sold + o.quantity
        WHERE sku_id = o.sku_id;
        paying := paying || n;
        CONTINUE;  -- answered below, once ranked
      END IF;
    END IF;
    RETURN NEXT;
  END LOOP;
  IF cardinality(paying) = 0 THEN
    RETURN;
  END IF;
  -- the sale row is every payment's lock (dense ranks for the gift): taken last, once
  UPDATE sale SET paid_seq = paid_seq + cardinality(paying) WHERE id = 1
  RETURNING paid_seq - cardinality(paying) INTO rank;
  FOREACH k IN ARRAY paying LOOP
    rank := rank + 1;
    -- one new version of the order row, not two (every index of orders gets each version)
    UPDATE orders SET status = 'paid', paid_at = p_now[k], paid_seq = rank,
                      gift = (rank <= p_gift_count[k])::integer
    WHERE order_id = p_order_id[k] RETURNING * INTO o;
    item := k; outcome := 'done'; snapshot := row_to_json(o)::text; detail := NULL;
    RETURN NEXT;
  END LOOP;
END
$$;
