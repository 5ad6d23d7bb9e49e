#!/usr/bin/env bash
# The store's upkeep in `sealguard serve` (docs/configuration.md "audit", docs/architecture.md):
# authorization codes, refresh tokens and revocations past their expiry are deleted, and audit
# rows past audit.retention_days or beyond the newest audit.max_rows, shortly after the start
# and hourly. Live rows stay; the audit's delete trigger still refuses any other delete; 0 keeps
# every audit row; out-of-range settings are refused. `sealguard audit list` exports what is kept.
. "$(dirname "$0")/lib/common.sh"

sg_ports
sg_write_config "$T/sg.yaml"
printf 'idm:\n  scrypt_ln: 10\naudit:\n  retention_days: 30\n  max_rows: 1000\n' >>"$T/sg.yaml"
SG() { "$SG_BIN" --config "$T/sg.yaml" "$@"; }
DB=$T/state/sealguard.db
CA=$T/state/pki/ca.crt
q() { sqlite3 -cmd '.timeout 5000' "$DB" "$1"; }
metric() { curl -s "http://127.0.0.1:$ADMIN/metrics" | awk -v k="sealguard_store_deleted_rows_total{reason=\"$1\"}" '$1==k{print $2}'; }
wait_for() { # wait_for SECONDS CMD...: polls CMD every 0.1 s until it succeeds
	local n=$(($1 * 10))
	shift
	for _ in $(seq 1 "$n"); do "$@" && return 0; sleep 0.1; done
	return 1
}

sg_start "$T/sg.yaml" || { not_ok "server start"; sg_done; }
printf 'alice-pass-1\n' >"$T/alice.pw"
expect "user add alice" SG user add alice --password-file "$T/alice.pw"
expect "client add ue-app" SG client add ue-app --redirect-uri http://127.0.0.1/callback --secret-file "$T/ue.secret"
sleep 1.2 # the running server picks the registry up
LOGIN=(--issuer "https://localhost:$UU" --client-id ue-app --client-secret-file "$T/ue.secret" --username alice --password-file "$T/alice.pw" --cacert "$CA" --scope "openid seal:gm")
expect "alice logs in (an authorization code and a refresh token stored)" SG login "${LOGIN[@]}" --token-cache "$T/a.tokens"
cp "$T/a.tokens" "$T/a-old.tokens"
expect "... and refreshes (the rotated refresh token stays, for replay detection)" SG token refresh --token-cache "$T/a.tokens"
expect "... and logs in again" SG login "${LOGIN[@]}" --token-cache "$T/b.tokens"
cp "$T/b.tokens" "$T/b-old.tokens"
expect "... and refreshes that grant" SG token refresh --token-cache "$T/b.tokens"
expect "server stops" sg_stop

# the first login's rows expire; so do the second login's code and its rotated refresh token,
# but its grant lives on (a day past their own expiry, their replay no longer revokes it: a
# grant that keeps refreshing must not keep every token it rotated); a revocation has expired,
# another has not; 1,700 audit rows: 500 from 40 days ago, then 1,200 of today
NOW=$(($(date +%s) * 1000))
q "UPDATE auth_codes SET expires_at = 1000;
   UPDATE refresh_tokens SET expires_at = 1000 WHERE grant_id = (SELECT grant_id FROM refresh_tokens ORDER BY id LIMIT 1);
   UPDATE refresh_tokens SET expires_at = 1000 WHERE rotated_at != 0;
   INSERT INTO revoked VALUES (1, 'old-jti', 1000, 2000), (1, 'live-jti', $NOW, $((NOW + 3600000)));"
EXPIRED=$(q "SELECT (SELECT count(*) FROM auth_codes) + (SELECT count(*) FROM refresh_tokens WHERE expires_at <= 1000) + 1")
LIVE_RT=$(q "SELECT count(*) FROM refresh_tokens WHERE expires_at > $NOW")
expect_match "both logins' codes, the first login's two refresh tokens, the second's rotated one, and a revocation, are past any use ($EXPIRED rows)" '^6$' "$EXPIRED"
q "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1700)
   INSERT INTO audit (ts, actor, action) SELECT CASE WHEN i <= 500 THEN $((NOW - 40 * 86400000)) ELSE $NOW END, 'test', 'row' || i FROM n;"
AUDIT0=$(q "SELECT count(*) FROM audit")
NEWEST=$(q "SELECT max(id) FROM audit")
refuse "a plain DELETE of audit rows is refused (append-only)" q "DELETE FROM audit WHERE action = 'row1'"
expect_eq "... nothing deleted" "$AUDIT0" "$(q "SELECT count(*) FROM audit")"

sg_start "$T/sg.yaml" || { not_ok "server restart"; sg_done; }
done_audit() { [ "$(metric audit_retention)" = $((AUDIT0 - 1000)) ]; }
expect "the upkeep runs shortly after the start: $((AUDIT0 - 1000)) audit rows deleted (/metrics)" wait_for 10 done_audit
expect_eq "... and the $EXPIRED expired codes, refresh tokens and revocations" "$EXPIRED" "$(metric expired)"
expect_eq "the newest 1000 audit rows stay (audit.max_rows)" "1000 $NEWEST" "$(q "SELECT count(*) || ' ' || max(id) FROM audit")"
expect_eq "... none older than 30 days (audit.retention_days)" 0 "$(q "SELECT count(*) FROM audit WHERE ts < $((NOW - 30 * 86400000))")"
expect_eq "no expired refresh token or revocation is left" "0 0" "$(q "SELECT (SELECT count(*) FROM refresh_tokens WHERE expires_at <= 1000) || ' ' || (SELECT count(*) FROM revoked WHERE expires_at <= 2000)")"
expect_eq "... the live ones stay (the second login's refresh token, the live revocation)" "$LIVE_RT 1" "$(q "SELECT count(*) FROM refresh_tokens") $(q "SELECT count(*) FROM revoked")"
expect_eq "... and no code: the second login's too, although its grant lives on" 0 "$(q "SELECT count(*) FROM auth_codes")"
expect_match "... the log says what went" "store upkeep: deleted $EXPIRED expired codes, refresh tokens, revocations and key versions, and $((AUDIT0 - 1000)) audit rows \(retention 30 days, at most 1000 rows\)" "$(cat "$T/server.log")"
expect_match "the first login's refresh token, deleted, is refused: invalid_grant" "invalid_grant" "$(SG token refresh --token-cache "$T/a-old.tokens" 2>&1)"
expect_match "the second login's rotated refresh token, deleted, is refused: invalid_grant" "invalid_grant" "$(SG token refresh --token-cache "$T/b-old.tokens" 2>&1)"
expect "... and its grant is not revoked by that: the second login refreshes" SG token refresh --token-cache "$T/b.tokens"
refuse "the audit is still append-only after a prune" q "DELETE FROM audit"
expect_eq "... and the prune flag is not left set" 0 "$(q "SELECT count(*) FROM audit_prune")"

# sealguard audit list: what the store keeps, oldest first, as JSON Lines to export it
SG audit list --limit 0 --json >"$T/audit.jsonl"
expect_eq "audit list --limit 0 --json: one line per row the store keeps" "$(q "SELECT count(*) FROM audit")" "$(wc -l <"$T/audit.jsonl")"
expect_eq "... oldest first, every field, the same as the store" \
	"$(q "SELECT id || ' ' || ts || ' ' || actor || ' ' || action FROM audit ORDER BY id LIMIT 1")" \
	"$(head -1 "$T/audit.jsonl" | python3 -c 'import json,sys; r=json.load(sys.stdin); print(r["id"], r["ts"], r["actor"], r["action"], sorted(r) == sorted(["id","ts","time","actor","action","object","refpoint","detail"]))' | sed 's/ True$//')"
MID=$(sed -n 500p "$T/audit.jsonl" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
expect_eq "... --after-id continues an export: the next 3 rows" "$(q "SELECT group_concat(id, ' ') FROM (SELECT id FROM audit WHERE id > $MID ORDER BY id LIMIT 3)")" \
	"$(SG audit list --after-id "$MID" --limit 3 --json | python3 -c 'import json,sys; print(" ".join(str(json.loads(l)["id"]) for l in sys.stdin))')"
expect_match "... as text with a header" "^ID  TIME  ACTOR  ACTION" "$(SG audit list --limit 1)"
OLDEST=$(q "SELECT min(id) FROM audit")
GAPOUT=$(SG audit list --after-id 5 --limit 2 --json 2>"$T/gap.err")
expect_eq "... an export that fell behind the retention (--after-id 5): exit 3" 3 "$?"
expect_match "... stderr names the rows it missed" "audit rows 6 to $((OLDEST - 1)) are no longer in the store" "$(cat "$T/gap.err")"
expect_eq "... and the kept rows are still printed" "$OLDEST $((OLDEST + 1))" "$(printf '%s\n' "$GAPOUT" | python3 -c 'import json,sys; print(" ".join(str(json.loads(l)["id"]) for l in sys.stdin))')"
SG audit list --after-id "$MID" --limit 3 --json >/dev/null 2>"$T/nogap.err"
expect_eq "... an export without a gap: exit 0, nothing on stderr" "0 " "$? $(cat "$T/nogap.err")"
SG audit list --limit -1 >/dev/null 2>&1
expect_eq "... --limit -1: refused (exit 2)" 2 "$?"
expect "server stops cleanly" sg_stop

# retention_days 0 and max_rows 0: every audit row stays
sed -i 's/retention_days: 30/retention_days: 0/; s/max_rows: 1000/max_rows: 0/' "$T/sg.yaml"
q "INSERT INTO audit (ts, actor, action) VALUES (1000, 'test', 'ancient');"
AUDIT1=$(q "SELECT count(*) FROM audit")
sg_start "$T/sg.yaml" || { not_ok "server restart"; sg_done; }
sleep 2.5
expect_eq "with audit.retention_days 0 and audit.max_rows 0 every audit row stays ($AUDIT1)" "$AUDIT1 0" "$(q "SELECT count(*) FROM audit") $(metric audit_retention)"
expect "server stops cleanly" sg_stop

# out of range
sed -i 's/retention_days: 0/retention_days: 40000/' "$T/sg.yaml"
expect_match "audit.retention_days 40000: refused" "audit.retention_days.*must be from 0 \(keep\) to 36500" "$(SG config check 2>&1)"
sed -i 's/retention_days: 40000/retention_days: 1/; s/max_rows: 0/max_rows: 10/' "$T/sg.yaml"
expect_match "audit.max_rows 10: refused" "audit.max_rows.*must be 0 \(no cap\) or at least 1000" "$(SG config check 2>&1)"
sg_done
