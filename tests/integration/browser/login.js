// The SIM-S login page (TS 33.434 Annex A, A.4.2 authorization endpoint) in a real browser:
// Debian's Chromium, headless, driven by npm playwright-core. It trusts only the SIM-S server
// key (--ignore-certificate-errors-spki-list with that key's SPKI hash), never all
// certificates. A small HTTP server of this script on loopback is the SIM-C's redirect URI
// (RFC 8252 §7.3 loopback redirect) and the host of the framing and CSP probe pages.
//
// What it checks, as a person using the page would meet it:
//   - the page renders; its inputs are found by their accessible labels, the button by its role;
//     the browser reports no Content Security Policy violation (console and
//     securitypolicyviolation events, with a probe page proving the detector sees one);
//   - typing the user name and password and clicking the button, and pressing Enter, each land
//     on the callback with a code and our state (RFC 6749 §4.1.2, RFC 9207 iss); the code is
//     exchanged (client_secret_basic + PKCE S256) and the ID token is validated here: ES256
//     signature against the JWKS, iss, aud, nonce, exp, acr; userinfo answers the same sub;
//   - a wrong password shows the generic failure message and a fresh form (new transaction)
//     that still works; an unknown user gets the same words (no user enumeration);
//   - the back button and a resubmitted used form give no second code (single-use login
//     transaction); the callback sees no Referer (Referrer-Policy: no-referrer);
//   - the page does not render inside a frame of another origin (frame-ancestors 'none',
//     X-Frame-Options DENY), while a frameable control page does;
//   - after the logins the browser holds no cookie and no web storage, and no URL it requested
//     carries the password.
// Prints "ok   - ..." / "FAIL - ..." lines like lib/common.sh; exits 1 on any failure.
//
// Environment: ISSUER, CLIENT_ID, CLIENT_SECRET_FILE, SG_USERNAME, PASSWORD_FILE, CB_PORT (the
// port of the redirect URI http://127.0.0.1:CB_PORT/callback), SPKI (base64 SHA-256 of the
// SIM-S server's SubjectPublicKeyInfo), CHROMIUM (the browser), SHOT_DIR (screenshots);
// NODE_EXTRA_CA_CERTS = the CA of the SIM-S certificate (for this script's own requests);
// NODE_PATH = where playwright-core is installed.
'use strict';

const crypto = require('crypto');
const fs = require('fs');
const http = require('http');
const path = require('path');
const { chromium } = require('playwright-core');

const env = (n) => {
	const v = process.env[n];
	if (!v) {
		console.log(`FAIL - environment variable ${n} is not set`);
		process.exit(1);
	}
	return v;
};
const readSecret = (f) => fs.readFileSync(f, 'utf8').replace(/\r?\n$/, '');

const ISSUER = env('ISSUER');
const CLIENT_ID = env('CLIENT_ID');
const CLIENT_SECRET = readSecret(env('CLIENT_SECRET_FILE'));
const USERNAME = env('SG_USERNAME');
const PASSWORD = readSecret(env('PASSWORD_FILE'));
const CB_PORT = Number(env('CB_PORT'));
const SPKI = env('SPKI');
const CHROMIUM = env('CHROMIUM');
const SHOT_DIR = env('SHOT_DIR');
const CB_ORIGIN = `http://127.0.0.1:${CB_PORT}`;
const REDIRECT_URI = `${CB_ORIGIN}/callback`;
const GENERIC_FAILURE = 'Wrong user name or password.';
const USED_TX = 'This sign-in page has expired or was already used.';

let failed = 0;
const ok = (m) => console.log(`ok   - ${m}`);
const notOk = (m) => {
	failed++;
	console.log(`FAIL - ${m}`);
};
const check = (cond, m, detail) => (cond ? ok(m) : notOk(detail !== undefined ? `${m}: ${detail}` : m));

const b64u = (buf) => Buffer.from(buf).toString('base64url');
const rand = () => b64u(crypto.randomBytes(24));

// ---- the loopback callback server (the SIM-C's redirect URI) and the probe pages ----
const hits = []; // every /callback request: { url, referer }
function startCallbackServer() {
	const srv = http.createServer((req, res) => {
		const u = new URL(req.url, CB_ORIGIN);
		const html = (status, body, headers = {}) => {
			res.writeHead(status, { 'content-type': 'text/html; charset=utf-8', ...headers });
			res.end(`<!doctype html><html lang="en"><head><meta charset="utf-8"><title>probe</title></head><body>${body}</body></html>`);
		};
		if (u.pathname === '/callback') {
			hits.push({ url: u.toString(), referer: req.headers.referer });
			html(200, '<h1>callback reached</h1>');
		} else if (u.pathname === '/frame') {
			// another origin framing the login page, next to a control frame that may be framed
			const src = u.searchParams.get('src').replace(/&/g, '&amp;').replace(/"/g, '&quot;');
			const ctl = u.searchParams.get('control').replace(/&/g, '&amp;').replace(/"/g, '&quot;');
			html(200, `<iframe id="login" title="login" src="${src}"></iframe>` +
				`<iframe id="control" title="control" src="${ctl}"></iframe>`);
		} else if (u.pathname === '/frameable') {
			html(200, '<p id="framed">framed content</p>');
		} else if (u.pathname === '/csp-probe') {
			// a page that violates its own CSP: proves the violation detector works
			html(200, '<p style="color:red">probe</p>', { 'content-security-policy': "default-src 'none'" });
		} else {
			res.writeHead(404);
			res.end();
		}
	});
	return new Promise((resolve, reject) => {
		srv.once('error', reject);
		srv.listen(CB_PORT, '127.0.0.1', () => resolve(srv));
	});
}

// ---- this script's own requests to the SIM-S (node fetch, trusting NODE_EXTRA_CA_CERTS) ----
async function json(url, opts) {
	const r = await fetch(url, opts);
	const text = await r.text();
	let body;
	try {
		body = JSON.parse(text);
	} catch {
		body = { raw: text };
	}
	return { status: r.status, body };
}

let META, JWKS;
async function exchange(code, verifier) {
	const basic = Buffer.from(`${encodeURIComponent(CLIENT_ID)}:${encodeURIComponent(CLIENT_SECRET)}`).toString('base64');
	return json(META.token_endpoint, {
		method: 'POST',
		headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: `Basic ${basic}` },
		body: new URLSearchParams({ grant_type: 'authorization_code', code, redirect_uri: REDIRECT_URI, code_verifier: verifier }).toString(),
	});
}

// Validates an ID token here (OIDC Core §3.1.3.7): ES256 signature with the JWKS key of its kid,
// iss, aud, nonce, exp; returns its claims or throws why not.
function validateIdToken(jwt, nonce) {
	const [h, p, s] = jwt.split('.');
	const header = JSON.parse(Buffer.from(h, 'base64url'));
	const claims = JSON.parse(Buffer.from(p, 'base64url'));
	if (header.alg !== 'ES256') throw new Error(`alg ${header.alg}`);
	const jwk = JWKS.keys.find((k) => k.kid === header.kid);
	if (!jwk) throw new Error(`kid ${header.kid} not in the JWKS`);
	const key = crypto.createPublicKey({ key: jwk, format: 'jwk' });
	if (!crypto.verify('sha256', Buffer.from(`${h}.${p}`), { key, dsaEncoding: 'ieee-p1363' }, Buffer.from(s, 'base64url')))
		throw new Error('bad signature');
	if (claims.iss !== ISSUER) throw new Error(`iss ${claims.iss}`);
	if (!(claims.aud === CLIENT_ID || (Array.isArray(claims.aud) && claims.aud.includes(CLIENT_ID))))
		throw new Error(`aud ${claims.aud}`);
	if (claims.nonce !== nonce) throw new Error('nonce differs');
	if (!(claims.exp > Date.now() / 1000)) throw new Error('expired');
	if (typeof claims.sub !== 'string' || !claims.sub) throw new Error('no sub');
	return claims;
}

// A fresh authorization request (PKCE S256, state, nonce, acr_values).
function newAuthz() {
	const verifier = rand() + rand();
	const a = { state: rand(), nonce: rand(), verifier };
	const u = new URL(META.authorization_endpoint);
	u.search = new URLSearchParams({
		response_type: 'code', client_id: CLIENT_ID, redirect_uri: REDIRECT_URI, scope: 'openid seal:gm',
		state: a.state, nonce: a.nonce, acr_values: '3gpp:acr:password',
		code_challenge: b64u(crypto.createHash('sha256').update(verifier).digest()),
		code_challenge_method: 'S256',
	}).toString();
	a.url = u.toString();
	return a;
}

// The code exchange of a login that landed on the callback at url; checks the tokens.
async function tokensFor(label, url, a) {
	const cb = new URL(url);
	check(cb.origin + cb.pathname === REDIRECT_URI, `${label}: landed on the redirect URI`, url);
	check(cb.searchParams.get('state') === a.state, `${label}: the callback carries our state`);
	check(cb.searchParams.get('iss') === ISSUER, `${label}: the callback carries iss (RFC 9207)`);
	const code = cb.searchParams.get('code');
	check(!!code, `${label}: the callback carries a code`);
	if (!code) return null;
	const t = await exchange(code, a.verifier);
	check(t.status === 200 && t.body.access_token && t.body.id_token && /^bearer$/i.test(t.body.token_type),
		`${label}: the code exchanged for tokens`, `${t.status} ${JSON.stringify(t.body)}`);
	if (t.status !== 200) return null;
	try {
		const c = validateIdToken(t.body.id_token, a.nonce);
		ok(`${label}: ID token valid (ES256 signature by the JWKS, iss, aud, nonce, exp)`);
		check(c.acr === '3gpp:acr:password', `${label}: ID token acr is 3gpp:acr:password`, c.acr);
		const ui = await json(META.userinfo_endpoint, { headers: { authorization: `Bearer ${t.body.access_token}` } });
		check(ui.status === 200 && ui.body.sub === c.sub, `${label}: userinfo answers the same sub`,
			`${ui.status} ${JSON.stringify(ui.body)}`);
	} catch (e) {
		notOk(`${label}: ID token: ${e.message}`);
	}
	const again = await exchange(code, a.verifier);
	check(again.status === 400 && again.body.error === 'invalid_grant', `${label}: the code is single use`,
		`${again.status} ${JSON.stringify(again.body)}`);
	return t.body;
}

// Collects CSP violations a page reports: console messages and securitypolicyviolation events
// (the listener is installed by the browser driver before any page script, outside the CSP).
function watchCsp(page) {
	const seen = [];
	page.on('console', (m) => {
		if (/Content Security Policy|Refused to/i.test(m.text())) seen.push(`console: ${m.text()}`);
	});
	return {
		seen,
		async events() {
			try {
				return await page.evaluate(() => window.__sgCsp || []);
			} catch {
				return [];
			}
		},
	};
}
const CSP_LISTENER = () => {
	window.__sgCsp = [];
	document.addEventListener('securitypolicyviolation', (e) =>
		window.__sgCsp.push(`${e.violatedDirective} blocked ${e.blockedURI || 'inline'}`));
};

const txOf = (page) => page.locator('input[name="tx"]').inputValue();

async function main() {
	const srv = await startCallbackServer();
	META = (await json(`${ISSUER}/.well-known/openid-configuration`)).body;
	JWKS = (await json(META.jwks_uri)).body;
	check(!!META.authorization_endpoint && Array.isArray(JWKS.keys), 'discovery and JWKS fetched');

	const browser = await chromium.launch({
		executablePath: CHROMIUM,
		headless: true,
		// trust only the SIM-S server key, not "any certificate"
		args: [`--ignore-certificate-errors-spki-list=${SPKI}`],
	});
	const requested = [];
	try {
		const context = await browser.newContext({ viewport: { width: 800, height: 640 } });
		await context.addInitScript(CSP_LISTENER);
		context.on('request', (r) => requested.push(r.url()));
		const page = await context.newPage();
		const csp = watchCsp(page);

		// --- the CSP violation detector sees a violation on a page made to have one ---
		await page.goto(`${CB_ORIGIN}/csp-probe`);
		await page.waitForTimeout(200);
		const probe = (await csp.events()).length + csp.seen.length;
		check(probe > 0, 'CSP detector: a probe page that breaks its own CSP is reported');
		csp.seen.length = 0;

		// --- 1. the page renders, found by labels; click the button (I2, I3) ---
		const a1 = newAuthz();
		const resp = await page.goto(a1.url);
		check(resp && resp.status() === 200, 'authorization URL: the login page (200)', resp && resp.status());
		const h = resp ? await resp.allHeaders() : {};
		check(/frame-ancestors 'none'/.test(h['content-security-policy'] || ''), 'login page CSP has frame-ancestors \'none\'',
			h['content-security-policy']);
		check(h['x-frame-options'] === 'DENY', 'login page X-Frame-Options DENY', h['x-frame-options']);
		check(/no-store/.test(h['cache-control'] || ''), 'login page Cache-Control no-store', h['cache-control']);
		check(h['set-cookie'] === undefined, 'login page sets no cookie', h['set-cookie']);
		check((await page.title()) === 'Sign in - sealguard', 'page title', await page.title());
		check(await page.getByRole('heading', { name: 'Sign in' }).isVisible(), 'heading "Sign in" visible');
		const user = page.getByLabel('User name', { exact: true });
		const pass = page.getByLabel('Password', { exact: true });
		const button = page.getByRole('button', { name: 'Sign in' });
		check((await user.count()) === 1 && (await user.isVisible()), 'input found by its label "User name"');
		check((await pass.count()) === 1 && (await pass.getAttribute('type')) === 'password',
			'input found by its label "Password" is a password field');
		check((await button.count()) === 1 && (await button.isVisible()), 'button "Sign in" found by its role');
		check((await user.getAttribute('autocomplete')) === 'username' &&
			(await pass.getAttribute('autocomplete')) === 'current-password',
			'autocomplete hints for password managers');
		check(await user.evaluate((el) => el === document.activeElement), 'the user name field has the focus');
		const bg = await button.evaluate((el) => getComputedStyle(el).backgroundColor);
		check(bg === 'rgb(11, 92, 173)', 'our inline style is applied (not blocked by the CSP)', bg);
		await page.screenshot({ path: path.join(SHOT_DIR, 'login.png') });
		const usedTx = await txOf(page);
		await user.fill(USERNAME);
		await pass.fill(PASSWORD);
		await Promise.all([page.waitForURL((u) => u.toString().startsWith(REDIRECT_URI), { timeout: 15000 }), button.click()]);
		const cspEvents = [...csp.seen, ...(await csp.events())];
		check(cspEvents.length === 0, 'no CSP violation reported by the browser', cspEvents.join(' | '));
		await tokensFor('click', page.url(), a1);
		check(hits.length === 1, 'one callback request so far', hits.length);

		// --- 2. the back button does not give a second code ---
		await page.goBack().catch(() => {});
		await page.waitForLoadState('load').catch(() => {});
		await page.waitForTimeout(300);
		const backUrl = page.url();
		const backHasForm = (await page.locator('input[name="tx"]').count()) === 1;
		if (backHasForm) {
			const backTx = await txOf(page);
			if (backTx === usedTx) {
				// the browser showed the used page again (bfcache): submitting it must fail
				await user.fill(USERNAME);
				await pass.fill(PASSWORD);
				await button.click();
				await page.waitForLoadState('load');
				check((await page.getByRole('alert').textContent()) === USED_TX,
					'back button: the restored used form is refused');
			} else {
				ok('back button: the page was fetched anew (no-store) with a fresh transaction');
			}
		} else {
			ok(`back button: no form shown again (${backUrl})`);
		}
		check(hits.length === 1, 'back button: no second callback without a new sign-in', hits.length);

		// --- 3. resubmitting a used form (its transaction) gives no code ---
		const a3 = newAuthz();
		await page.goto(a3.url);
		await page.locator('input[name="tx"]').evaluate((el, v) => { el.value = v; }, usedTx);
		await user.fill(USERNAME);
		await pass.fill(PASSWORD);
		const [r3] = await Promise.all([
			page.waitForResponse((r) => r.url().endsWith('/oauth2/login') && r.request().method() === 'POST'),
			button.click(),
		]);
		await page.waitForLoadState('load');
		check(r3.status() === 400, 'resubmitted used transaction: 400', r3.status());
		check((await page.getByRole('alert').textContent()) === USED_TX, 'resubmitted used transaction: says the page was used');
		check(hits.length === 1, 'resubmitted used transaction: no callback, no code', hits.length);
		await page.screenshot({ path: path.join(SHOT_DIR, 'used.png') });

		// --- 4. wrong password: generic message, fresh form that works; Enter submits ---
		const a4 = newAuthz();
		await page.goto(a4.url);
		const tx4 = await txOf(page);
		await user.fill(USERNAME);
		await pass.fill(PASSWORD + 'x');
		const [r4] = await Promise.all([
			page.waitForResponse((r) => r.url().endsWith('/oauth2/login') && r.request().method() === 'POST'),
			pass.press('Enter'),
		]);
		await page.waitForLoadState('load');
		check(r4.status() === 200, 'wrong password (Enter): the login page again (200)', r4.status());
		const alert = page.getByRole('alert');
		check((await alert.textContent()) === GENERIC_FAILURE, 'wrong password: the generic failure message',
			await alert.textContent());
		const tx4b = await txOf(page);
		check(!!tx4b && tx4b !== tx4, 'wrong password: a fresh form (new transaction)');
		check((await user.inputValue()) === USERNAME && (await pass.inputValue()) === '',
			'wrong password: user name kept, password field empty');
		check(await pass.evaluate((el) => el === document.activeElement),
			'wrong password: the password field has the focus (user name kept)');
		check((await pass.getAttribute('aria-describedby')) === 'msg' && (await user.getAttribute('aria-describedby')) === 'msg',
			'the message describes both fields (aria-describedby), so a screen reader reads it on focus');
		await page.screenshot({ path: path.join(SHOT_DIR, 'login-failed.png') });
		// an unknown user gets the same words (no user enumeration, I3)
		await user.fill(`${USERNAME}-nobody`);
		await pass.fill(PASSWORD);
		await pass.press('Enter');
		await page.waitForLoadState('load');
		check((await page.getByRole('alert').textContent()) === GENERIC_FAILURE, 'unknown user: the same generic message');
		check(hits.length === 1, 'failed sign-ins: no callback', hits.length);
		// the fresh form still works, with the keyboard
		await user.fill(USERNAME);
		await pass.fill(PASSWORD);
		await Promise.all([page.waitForURL((u) => u.toString().startsWith(REDIRECT_URI), { timeout: 15000 }), pass.press('Enter')]);
		await tokensFor('fresh form after failures, Enter', page.url(), a4);
		check(hits.every((x) => x.referer === undefined), 'the callback gets no Referer (Referrer-Policy no-referrer)',
			hits.map((x) => x.referer).join(' '));
		const cspEvents2 = [...csp.seen, ...(await csp.events())];
		check(cspEvents2.length === 0, 'no CSP violation on the failure and error pages', cspEvents2.join(' | '));

		// --- 4b. reloading the answer to a failed sign-in resubmits its POST: no code either ---
		const a6 = newAuthz();
		await page.goto(a6.url);
		await user.fill(USERNAME);
		await pass.fill(PASSWORD + 'y');
		await pass.press('Enter');
		await page.waitForLoadState('load');
		const [r6] = await Promise.all([
			page.waitForResponse((r) => r.url().endsWith('/oauth2/login')),
			page.reload(),
		]);
		console.log(`# reload: ${r6.request().method()} ${r6.status()} ${page.url()}`);
		check(r6.request().method() === 'POST' && r6.status() === 400 &&
			(await page.getByRole('alert').textContent()) === USED_TX,
			'reload of a failed sign-in (form resubmission): refused as already used',
			`${r6.request().method()} ${r6.status()}`);
		check(hits.length === 2, 'form resubmission: no callback', hits.length);

		// --- 5. no framing by another origin (frame-ancestors 'none'), a control frame renders ---
		const fp = await context.newPage();
		const fcsp = watchCsp(fp);
		const a5 = newAuthz();
		const control = `http://localhost:${CB_PORT}/frameable`;
		await fp.goto(`${CB_ORIGIN}/frame?src=${encodeURIComponent(a5.url)}&control=${encodeURIComponent(control)}`);
		await fp.waitForLoadState('load');
		await fp.waitForTimeout(500);
		check((await fp.frameLocator('#control').locator('#framed').count()) === 1,
			'control: a frameable page of another origin renders in the frame');
		check((await fp.frameLocator('#login').getByLabel('User name').count()) === 0 &&
			(await fp.frameLocator('#login').locator('form').count()) === 0,
			'the login page does not render inside a frame of another origin');
		check(fcsp.seen.some((m) => /frame-ancestors/.test(m)), 'the browser names frame-ancestors as the reason',
			fcsp.seen.join(' | ') || 'no console message');
		await fp.close();

		// --- 6. what the browser keeps: no cookie, no web storage, no password in any URL ---
		const cookies = await context.cookies();
		check(cookies.length === 0, 'no cookie in the browser after the logins',
			cookies.map((c) => `${c.name}@${c.domain}`).join(' '));
		await page.goto(newAuthz().url);
		const store = await page.evaluate(async () => ({
			local: localStorage.length,
			session: sessionStorage.length,
			idb: indexedDB.databases ? (await indexedDB.databases()).length : 0,
			caches: (await caches.keys()).length,
		}));
		check(store.local === 0 && store.session === 0 && store.idb === 0 && store.caches === 0,
			'no web storage on the SIM-S origin (local, session, IndexedDB, Cache API)', JSON.stringify(store));
		// a phone-sized window: the form fits without scrolling sideways
		await page.setViewportSize({ width: 360, height: 640 });
		const wide = await page.evaluate(() => document.documentElement.scrollWidth);
		check(wide <= 360, 'the page fits a 360 px wide window', `${wide} px wide`);
		check(await page.getByRole('button', { name: 'Sign in' }).isVisible(), 'the button is visible at 360 px');
		await page.screenshot({ path: path.join(SHOT_DIR, 'login-narrow.png') });
		const leaks = requested.filter((u) => u.includes(encodeURIComponent(PASSWORD)) || u.includes(PASSWORD));
		check(leaks.length === 0, 'no requested URL carries the password', leaks.join(' '));
		await context.close();
	} finally {
		await browser.close();
		srv.close();
	}
}

main()
	.catch((e) => notOk(`unexpected: ${e.stack || e}`))
	.finally(() => process.exit(failed ? 1 : 0));
