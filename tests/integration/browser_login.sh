#!/usr/bin/env bash
# The SIM-S login page (TS 33.434 Annex A) in a real browser: Debian's Chromium, headless,
# driven by npm playwright-core, which this script installs into a test-local folder under the
# build directory (reused when already there). The browser trusts only the SIM-S server key (its
# SPKI hash), never all certificates. The checks themselves are browser/login.js: labels and
# roles, no CSP violation, click and Enter, code exchange with ID token validation, the generic
# failure message and a fresh form, back button and used-form resubmission, framing by another
# origin, cookies and storage. Screenshots are kept with SG_KEEP_TMP=1. Exits 77 (ctest:
# skipped) when chromium or node/npm are missing or npm cannot reach its registry.
. "$(dirname "$0")/lib/common.sh"

SKIP=77
HERE=$(cd "$(dirname "$0")" && pwd)
BUILD_DIR=$(cd "$(dirname "$SG_BIN")" && pwd)
NODE_DIR=${SG_NODE_DIR:-$BUILD_DIR/test-node/browser}
PLAYWRIGHT_VERSION=1
CHROMIUM=${SG_CHROMIUM:-$(command -v chromium || command -v chromium-browser || true)}

if [ -z "$CHROMIUM" ] || [ ! -x "$CHROMIUM" ]; then
	echo "SKIP: chromium is needed for the browser test (scripts/install-deps.sh installs it)"
	exit $SKIP
fi
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
	echo "SKIP: node and npm are needed for the browser test"
	exit $SKIP
fi
have_lib() { [ -f "$NODE_DIR/node_modules/playwright-core/package.json" ] &&
	node -e 'process.exit(require(process.argv[1]).version.startsWith(process.argv[2] + ".") ? 0 : 1)' \
		"$NODE_DIR/node_modules/playwright-core/package.json" "$PLAYWRIGHT_VERSION"; }
if have_lib; then
	echo "# reusing playwright-core in $NODE_DIR"
else
	mkdir -p "$NODE_DIR"
	echo "# installing playwright-core@$PLAYWRIGHT_VERSION into $NODE_DIR"
	# playwright-core downloads no browser on install; we use Debian's chromium
	if ! PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 timeout 180 npm install --prefix "$NODE_DIR" --no-audit \
		--no-fund --no-save "playwright-core@$PLAYWRIGHT_VERSION" >"$T/npm.log" 2>&1 || ! have_lib; then
		echo "SKIP: npm could not install playwright-core@$PLAYWRIGHT_VERSION (registry unreachable?):"
		tail -5 "$T/npm.log" | sed 's/^/     | /'
		exit $SKIP
	fi
fi
echo "# playwright-core $(node -p 'require(process.argv[1]).version' "$NODE_DIR/node_modules/playwright-core/package.json"), $("$CHROMIUM" --version 2>/dev/null | head -1), node $(node --version)"

sg_ports
CB_PORT=$(free_port)
sg_write_config "$T/sg.yaml"
cat >>"$T/sg.yaml" <<YAML
idm:
  scrypt_ln: 10
YAML
sg_start "$T/sg.yaml" || { not_ok "server start"; sg_done; }
PKI=$T/state/pki
ISSUER=https://localhost:$UU
# The SPKI pin the browser trusts: base64(SHA-256(SubjectPublicKeyInfo DER)) of the server key.
SPKI=$(openssl x509 -in "$PKI/server.crt" -noout -pubkey | openssl pkey -pubin -outform der |
	openssl dgst -sha256 -binary | base64)
expect_match "SPKI hash of the SIM-S server key" '^[A-Za-z0-9+/]{43}=$' "$SPKI"
printf 'browser pass phrase 7\n' >"$T/pw"
expect "user add" "$SG_BIN" --config "$T/sg.yaml" user add browser-user --password-file "$T/pw"
expect "client add with a loopback redirect URI" "$SG_BIN" --config "$T/sg.yaml" client add browser-app \
	--redirect-uri "http://127.0.0.1:$CB_PORT/callback" --secret-file "$T/secret"
sleep 1.2 # the running server reloads its registry cache when the generation changes

# The pin is what makes the browser accept our dev CA's certificate: without it the page is
# refused, with it (and nothing else relaxed) the page is shown.
dump() { # dump PROFILE [CHROMIUM ARGS...]: the DOM chromium shows for the discovery document
	local prof=$1; shift
	HOME=$T timeout 60 "$CHROMIUM" --headless --no-sandbox --disable-gpu --user-data-dir="$T/$prof" "$@" \
		--dump-dom "$ISSUER/.well-known/openid-configuration" 2>/dev/null
}
if dump profile-unpinned | grep -q '"issuer"'; then
	not_ok "without the SPKI pin the browser refuses our dev CA's certificate (page was shown)"
else
	ok "without the SPKI pin the browser refuses our dev CA's certificate"
fi
if dump profile-pinned --ignore-certificate-errors-spki-list="$SPKI" | grep -q '"issuer"'; then
	ok "with the SPKI pin of the server key the browser shows the page"
else
	not_ok "with the SPKI pin of the server key the browser shows the page"
fi

mkdir -p "$T/shots"
START=$(date +%s.%N)
out=$(cd "$T" && ISSUER=$ISSUER CLIENT_ID=browser-app CLIENT_SECRET_FILE=$T/secret \
	SG_USERNAME=browser-user PASSWORD_FILE=$T/pw CB_PORT=$CB_PORT SPKI=$SPKI CHROMIUM=$CHROMIUM \
	SHOT_DIR=$T/shots NODE_EXTRA_CA_CERTS=$PKI/ca.crt NODE_PATH=$NODE_DIR/node_modules \
	HOME=$T timeout 180 node "$HERE/browser/login.js" 2>&1)
rc=$?
printf '%s\n' "$out"
PASSED=$((PASSED + $(printf '%s\n' "$out" | grep -c '^ok ')))
FAILED=$((FAILED + $(printf '%s\n' "$out" | grep -c '^FAIL ')))
[ "$rc" -eq 0 ] || printf '%s\n' "$out" | grep -q '^FAIL ' || not_ok "node exited $rc"
echo "# browser run: $(python3 -c 'import sys; print(f"{float(sys.argv[2]) - float(sys.argv[1]):.1f}")' "$START" "$(date +%s.%N)") s"
if [ -s "$T/shots/login.png" ]; then
	ok "screenshots taken (kept with SG_KEEP_TMP=1 in $T/shots)"
else
	not_ok "screenshots taken"
fi
expect "server stops cleanly" sg_stop
sg_done
