#!/usr/bin/env bash
# Interoperability of the SIM-S with an independent, certified OpenID Connect client library:
# npm openid-client 5.x (CommonJS, runs on Node 20), installed by this script into a test-local
# folder under the build directory (reused when already there). The flow itself is
# lib/oidc_interop.js: discovery, authorization code + PKCE S256, the login page, code exchange
# with the library's ID token validation, userinfo, refresh with rotation, code replay and
# refresh token reuse. Exits 77 (ctest: skipped) when node/npm are missing or npm cannot reach
# its registry.
. "$(dirname "$0")/lib/common.sh"

SKIP=77
HERE=$(cd "$(dirname "$0")" && pwd)
BUILD_DIR=$(cd "$(dirname "$SG_BIN")" && pwd)
NODE_DIR=${SG_NODE_DIR:-$BUILD_DIR/test-node/oidc-interop}
OIDC_CLIENT_VERSION=5

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
	echo "SKIP: node and npm are needed for the openid-client interoperability test"
	exit $SKIP
fi
have_lib() { [ -f "$NODE_DIR/node_modules/openid-client/package.json" ] &&
	node -e 'process.exit(require(process.argv[1]).version.startsWith(process.argv[2] + ".") ? 0 : 1)' \
		"$NODE_DIR/node_modules/openid-client/package.json" "$OIDC_CLIENT_VERSION"; }
if have_lib; then
	echo "# reusing openid-client in $NODE_DIR"
else
	mkdir -p "$NODE_DIR"
	echo "# installing openid-client@$OIDC_CLIENT_VERSION into $NODE_DIR"
	if ! timeout 180 npm install --prefix "$NODE_DIR" --no-audit --no-fund --no-save \
		"openid-client@$OIDC_CLIENT_VERSION" >"$T/npm.log" 2>&1 || ! have_lib; then
		echo "SKIP: npm could not install openid-client@$OIDC_CLIENT_VERSION (registry unreachable?):"
		tail -5 "$T/npm.log" | sed 's/^/     | /'
		exit $SKIP
	fi
fi
echo "# openid-client $(node -p 'require(process.argv[1]).version' "$NODE_DIR/node_modules/openid-client/package.json"), node $(node --version)"

sg_ports
sg_write_config "$T/sg.yaml"
sg_start "$T/sg.yaml" || { not_ok "server start"; sg_done; }
CA=$T/state/pki/ca.crt
ISSUER=https://localhost:$UU
RURI=http://127.0.0.1/callback
printf 'interop pass phrase\n' >"$T/pw"
expect "user add (CLI, server running)" "$SG_BIN" --config "$T/sg.yaml" user add interop-user --password-file "$T/pw"
expect "client add (CLI, server running)" "$SG_BIN" --config "$T/sg.yaml" client add interop-app --redirect-uri "$RURI" --secret-file "$T/secret"
# RFC 6749 §2.3.1: client_secret_basic form-urlencodes id and secret before base64; the
# library does, so the SIM-S must decode them. A secret with the characters that matter:
printf '%s\n' 'a+b:c%2Fd e/f=g&h?i#j~k!l*m(n)o;p,q@r$s' >"$T/secret2"
expect "client add with a secret full of special characters" "$SG_BIN" --config "$T/sg.yaml" client add interop-app-2 --redirect-uri "$RURI" --secret-file "$T/secret2"
sleep 1.2 # the running server reloads its registry cache when the generation changes

# interop CLIENT_ID SECRET_FILE LABEL: the library's whole flow with one client
interop() {
	local out rc
	out=$(cd "$T" && ISSUER=$ISSUER CLIENT_ID=$1 CLIENT_SECRET_FILE=$2 REDIRECT_URI=$RURI \
		SG_USERNAME=interop-user PASSWORD_FILE=$T/pw NODE_EXTRA_CA_CERTS=$CA \
		NODE_PATH=$NODE_DIR/node_modules timeout 120 node "$HERE/lib/oidc_interop.js" 2>&1)
	rc=$?
	printf '%s\n' "$out" | sed "s/^\(ok   - \|FAIL - \)/\1[$3] /"
	PASSED=$((PASSED + $(printf '%s\n' "$out" | grep -c '^ok ')))
	FAILED=$((FAILED + $(printf '%s\n' "$out" | grep -c '^FAIL ')))
	[ "$rc" -eq 0 ] || printf '%s\n' "$out" | grep -q '^FAIL ' || not_ok "[$3] node exited $rc"
}
interop interop-app "$T/secret" "generated secret"
interop interop-app-2 "$T/secret2" "special-character secret"
sg_done
