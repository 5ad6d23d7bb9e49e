// The whole SIM-C flow driven by an independent, certified OpenID Connect client library
// (npm openid-client 5.x, CommonJS) against sealguard's SIM-S: discovery, authorization code +
// PKCE S256 + state + nonce + acr_values, the login page (tx + username + password, the
// redirect taken without following it), client.callback (code exchange with
// client_secret_basic and the library's own ID token validation: JWKS signature, iss, aud,
// exp, iat, nonce, at_hash), userinfo (sub must match), refresh (rotation, sub unchanged),
// and the reuse of a rotated refresh token. Prints "ok   - ..." / "FAIL - ..." lines like
// lib/common.sh and exits 1 on any failure. Secrets come from files, never from argv.
//
// Environment: ISSUER, CLIENT_ID, CLIENT_SECRET_FILE, REDIRECT_URI, SG_USERNAME,
// PASSWORD_FILE; NODE_EXTRA_CA_CERTS = the CA of the SIM-S certificate; NODE_PATH = where
// openid-client is installed.
'use strict';

const fs = require('fs');
const https = require('https');
const { Issuer, generators, custom, errors } = require('openid-client');

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
const REDIRECT_URI = env('REDIRECT_URI');
const USERNAME = env('SG_USERNAME');
const PASSWORD = readSecret(env('PASSWORD_FILE'));
const SCOPE = 'openid seal:gm seal:km sdd';

let failed = 0;
const ok = (m) => console.log(`ok   - ${m}`);
const notOk = (m) => {
	failed++;
	console.log(`FAIL - ${m}`);
};
const check = (cond, m, detail) => (cond ? ok(m) : notOk(detail ? `${m}: ${detail}` : m));
const why = (e) =>
	e instanceof errors.OPError
		? `OPError ${e.error}${e.error_description ? ': ' + e.error_description : ''}`
		: `${e.name}: ${e.message}`;

custom.setHttpOptionsDefaults({ timeout: 10000 });

// One HTTPS request with node's https (redirects are NOT followed). Trusts
// NODE_EXTRA_CA_CERTS like openid-client does.
function request(method, url, body, headers = {}) {
	return new Promise((resolve, reject) => {
		const req = https.request(url, { method, headers }, (res) => {
			let data = '';
			res.setEncoding('utf8');
			res.on('data', (c) => (data += c));
			res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: data }));
		});
		req.on('error', reject);
		req.setTimeout(10000, () => req.destroy(new Error('timeout')));
		if (body) req.write(body);
		req.end();
	});
}

// Attribute value of the first tag matching tagRe (independent of sealguard's C scanner).
function attr(tag, name) {
	const m = tag.match(new RegExp(`\\s${name}\\s*=\\s*("([^"]*)"|'([^']*)'|([^\\s>]+))`, 'i'));
	if (!m) return undefined;
	const v = m[2] ?? m[3] ?? m[4];
	return v
		.replace(/&quot;/g, '"')
		.replace(/&#39;/g, "'")
		.replace(/&lt;/g, '<')
		.replace(/&gt;/g, '>')
		.replace(/&amp;/g, '&');
}

// Logs in through the login page; returns the Location of the final redirect.
async function loginThroughPage(authUrl, username, password) {
	const page = await request('GET', authUrl);
	if (page.status !== 200) throw new Error(`authorization endpoint answered ${page.status}`);
	const inputs = page.body.match(/<input\b[^>]*>/gi) || [];
	const txTag = inputs.find((t) => attr(t, 'name') === 'tx');
	if (!txTag) throw new Error('no tx field in the login page');
	const formTag = (page.body.match(/<form\b[^>]*>/i) || [])[0] || '';
	const action = new URL(attr(formTag, 'action') || '/oauth2/login', authUrl).toString();
	const form = new URLSearchParams({ tx: attr(txTag, 'value'), username, password }).toString();
	const res = await request('POST', action, form, {
		'content-type': 'application/x-www-form-urlencoded',
		'content-length': Buffer.byteLength(form),
	});
	return { status: res.status, location: res.headers.location, page };
}

async function main() {
	// --- discovery (OIDC Discovery 1.0 §3, §4) ---
	const issuer = await Issuer.discover(ISSUER);
	const md = issuer.metadata;
	check(md.issuer === ISSUER, 'Issuer.discover: issuer equals the URL asked', md.issuer);
	for (const k of ['authorization_endpoint', 'token_endpoint', 'jwks_uri', 'response_types_supported',
		'subject_types_supported', 'id_token_signing_alg_values_supported']) {
		check(md[k] !== undefined, `discovery: REQUIRED metadata ${k} present`);
	}
	check((md.response_types_supported || []).includes('code'), 'discovery: response_types_supported has code');
	check((md.id_token_signing_alg_values_supported || []).includes('ES256'), 'discovery: ES256 ID tokens');
	check((md.code_challenge_methods_supported || []).includes('S256') &&
		!(md.code_challenge_methods_supported || []).includes('plain'),
		'discovery: code_challenge_methods_supported is S256 without plain');
	check(!md.token_endpoint_auth_methods_supported ||
		md.token_endpoint_auth_methods_supported.includes('client_secret_basic'),
		'discovery: client_secret_basic supported');
	check(md.userinfo_endpoint !== undefined, 'discovery: userinfo_endpoint present');

	const client = new issuer.Client({
		client_id: CLIENT_ID,
		client_secret: CLIENT_SECRET,
		redirect_uris: [REDIRECT_URI],
		response_types: ['code'],
		token_endpoint_auth_method: 'client_secret_basic',
		id_token_signed_response_alg: 'ES256',
	});

	// --- authorization request with PKCE S256, state, nonce, acr_values (I2) ---
	const code_verifier = generators.codeVerifier();
	const code_challenge = generators.codeChallenge(code_verifier);
	const state = generators.state();
	const nonce = generators.nonce();
	const authUrl = client.authorizationUrl({
		scope: SCOPE, state, nonce, code_challenge, code_challenge_method: 'S256',
		acr_values: '3gpp:acr:password',
	});

	// --- wrong password: the login page again, no redirect (I3, no user enumeration) ---
	const bad = await loginThroughPage(authUrl, USERNAME, PASSWORD + 'x');
	check(bad.status === 200 && !bad.location, 'wrong password: the login page again',
		`status ${bad.status}`);

	// --- the login (a fresh authorization request: a login transaction is single-use) ---
	const state2 = generators.state();
	const nonce2 = generators.nonce();
	const authUrl2 = client.authorizationUrl({
		scope: SCOPE, state: state2, nonce: nonce2, code_challenge, code_challenge_method: 'S256',
		acr_values: '3gpp:acr:password',
	});
	const res = await loginThroughPage(authUrl2, USERNAME, PASSWORD);
	check(res.status === 302 || res.status === 303, 'login POST redirects', `status ${res.status}`);
	check(res.location && res.location.startsWith(REDIRECT_URI + '?'), 'to the registered redirect URI',
		res.location);
	const params = client.callbackParams(res.location);
	check(params.state === state2, 'the redirect carries our state');
	check(!!params.code, 'the redirect carries a code');

	// --- code exchange + the library's ID token validation ---
	let tokenSet;
	try {
		tokenSet = await client.callback(REDIRECT_URI, params,
			{ state: state2, nonce: nonce2, code_verifier, response_type: 'code' });
		ok('client.callback: code exchanged, ID token validated by openid-client');
	} catch (e) {
		notOk(`client.callback: ${why(e)}`);
		return;
	}
	check(String(tokenSet.token_type).toLowerCase() === 'bearer', 'token_type bearer', tokenSet.token_type);
	check(Number.isInteger(tokenSet.expires_in) || typeof tokenSet.expires_at === 'number',
		'expires_in present');
	check(!!tokenSet.refresh_token, 'a refresh token is issued');
	const claims = tokenSet.claims();
	check(claims.iss === ISSUER, 'ID token iss');
	check(claims.nonce === nonce2, 'ID token nonce');
	check(typeof claims.sub === 'string' && claims.sub.length > 0 && claims.sub.length <= 255,
		'ID token sub (≤ 255)');
	check(claims.aud === CLIENT_ID || (Array.isArray(claims.aud) && claims.aud.includes(CLIENT_ID)),
		'ID token aud contains the client');
	const idHeader = JSON.parse(Buffer.from(tokenSet.id_token.split('.')[0], 'base64url'));
	check(idHeader.alg === 'ES256' && !!idHeader.kid, 'ID token header: ES256 with a kid');
	const atClaims = JSON.parse(Buffer.from(tokenSet.access_token.split('.')[1], 'base64url'));
	check(atClaims.exp - atClaims.iat < claims.exp - claims.iat,
		'the access token lives shorter than the ID token (I8)');

	// --- userinfo ---
	try {
		const ui = await client.userinfo(tokenSet);
		check(ui.sub === claims.sub, 'userinfo: sub equals the ID token sub');
	} catch (e) {
		notOk(`userinfo: ${why(e)}`);
	}

	// --- refresh with rotation (I9; OIDC Core §12) ---
	let refreshed;
	try {
		refreshed = await client.refresh(tokenSet);
		ok('client.refresh: new tokens, any new ID token validated (same sub)');
	} catch (e) {
		notOk(`client.refresh: ${why(e)}`);
		return;
	}
	check(refreshed.access_token && refreshed.access_token !== tokenSet.access_token, 'a new access token');
	check(refreshed.refresh_token && refreshed.refresh_token !== tokenSet.refresh_token,
		'the refresh token rotated');
	try {
		const ui = await client.userinfo(refreshed.access_token);
		check(ui.sub === claims.sub, 'userinfo with the refreshed access token');
	} catch (e) {
		notOk(`userinfo with the refreshed access token: ${why(e)}`);
	}

	// --- a code is single use, and its replay revokes what it issued (I5, OAuth BCP) ---
	try {
		await client.callback(REDIRECT_URI, params, { state: state2, nonce: nonce2, code_verifier });
		notOk('a replayed code is refused (was accepted)');
	} catch (e) {
		check(e instanceof errors.OPError && e.error === 'invalid_grant', 'a replayed code is refused', why(e));
	}
	try {
		await client.refresh(refreshed.refresh_token);
		notOk('after the code replay, its refresh tokens are revoked (was accepted)');
	} catch (e) {
		check(e instanceof errors.OPError && e.error === 'invalid_grant',
			'after the code replay, its refresh tokens are revoked', why(e));
	}

	// --- a rotated-out refresh token is refused (reuse detection), on a fresh login ---
	const s3 = generators.state(), n3 = generators.nonce(), v3 = generators.codeVerifier();
	const url3 = client.authorizationUrl({
		scope: SCOPE, state: s3, nonce: n3, code_challenge: generators.codeChallenge(v3),
		code_challenge_method: 'S256', acr_values: '3gpp:acr:password',
	});
	const r3 = await loginThroughPage(url3, USERNAME, PASSWORD);
	let ts3;
	try {
		ts3 = await client.callback(REDIRECT_URI, client.callbackParams(r3.location),
			{ state: s3, nonce: n3, code_verifier: v3 });
		ok('a second login');
	} catch (e) {
		notOk(`a second login: ${why(e)}`);
		return;
	}
	try {
		await client.refresh(ts3);
		ok('refresh of the second login');
	} catch (e) {
		notOk(`refresh of the second login: ${why(e)}`);
		return;
	}
	try {
		await client.refresh(ts3.refresh_token);
		notOk('a rotated-out refresh token is refused (was accepted)');
	} catch (e) {
		check(e instanceof errors.OPError && e.error === 'invalid_grant',
			'a rotated-out refresh token is refused', why(e));
	}
}

main()
	.catch((e) => notOk(`unexpected: ${why(e)}`))
	.finally(() => process.exit(failed ? 1 : 0));
