// bench/idm_codes.mjs: prepares the single-use inputs of bench/idm.sh before a timed phase, through
// each server's real flow (authorization request, user login or session, redirect with the code).
//   node idm_codes.mjs codes KIND BASE N PAR OUT   KIND: sealguard | glewlwyd | oidc-provider
//     writes N token-request bodies (authorization_code + PKCE verifier), one a line
//   node idm_codes.mjs logintx BASE N CONNS OUT
//     writes N sealguard login form bodies (fresh login transaction, user lu<k % CONNS>)
// Environment: CLIENT_ID, REDIRECT_URI, SCOPE, USERS (space-separated user:password, one per
// parallel worker; glewlwyd and oidc-provider use the first), AUTH_PATH (authorization endpoint).
import https from 'node:https';
import { createHash, randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';

const [mode, ...args] = process.argv.slice(2);
const env = process.env;
const agent = new https.Agent({ keepAlive: true, maxSockets: 64, rejectUnauthorized: false });
const b64u = (b) => b.toString('base64url');
const VERIFIER = b64u(randomBytes(48));
const CHALLENGE = b64u(createHash('sha256').update(VERIFIER).digest());

function req(base, method, path, { body, headers = {}, jar } = {}) {
	return new Promise((resolve, reject) => {
		const u = new URL(path, base);
		const h = { ...headers };
		if (jar && jar.size) h.cookie = [...jar].map(([k, v]) => `${k}=${v}`).join('; ');
		if (body !== undefined) h['content-length'] = Buffer.byteLength(body);
		const r = https.request(u, { method, agent, headers: h }, (res) => {
			let data = '';
			res.setEncoding('utf8');
			res.on('data', (c) => { data += c; });
			res.on('end', () => {
				if (jar) for (const c of res.headers['set-cookie'] || []) {
					const [nv] = c.split(';');
					const i = nv.indexOf('=');
					jar.set(nv.slice(0, i).trim(), nv.slice(i + 1).trim());
				}
				resolve({ status: res.statusCode, headers: res.headers, body: data });
			});
		});
		r.on('error', reject);
		if (body !== undefined) r.write(body);
		r.end();
	});
}
const form = (o) => new URLSearchParams(o).toString();
function authzQuery(state) {
	return '?' + form({
		response_type: 'code', client_id: env.CLIENT_ID, redirect_uri: env.REDIRECT_URI,
		scope: env.SCOPE, state, nonce: 'n-' + state, code_challenge: CHALLENGE,
		code_challenge_method: 'S256', acr_values: '3gpp:acr:password',
	});
}
function codeOf(res, what) {
	const loc = res.headers.location;
	const code = loc && new URL(loc, 'https://x/').searchParams.get('code');
	if (!code) throw new Error(`${what}: no code (status ${res.status}, location ${loc}): ${res.body.slice(0, 300)}`);
	return code;
}
const users = (env.USERS || '').split(' ').filter(Boolean).map((s) => s.split(':'));

const flows = {
	// authorization request -> login page with a single-use tx -> POST credentials -> code
	async sealguard(base, w) {
		const [u, p] = users[w % users.length];
		const page = await req(base, 'GET', env.AUTH_PATH + authzQuery('s' + w));
		const tx = /name="tx" value="([^"]+)"/.exec(page.body)?.[1];
		if (!tx) throw new Error(`sealguard authorize: ${page.status} ${page.body.slice(0, 300)}`);
		const res = await req(base, 'POST', '/oauth2/login', {
			body: form({ tx, username: u, password: p }),
			headers: { 'content-type': 'application/x-www-form-urlencoded' },
		});
		return codeOf(res, 'sealguard login');
	},
	// the user's session cookie (one password check per worker) -> authorization request -> code
	async glewlwyd(base, w, st) {
		if (!st.jar) {
			st.jar = new Map();
			const [u, p] = users[0];
			const r = await req(base, 'POST', '/api/auth/', { body: JSON.stringify({ username: u, password: p }),
				headers: { 'content-type': 'application/json' }, jar: st.jar });
			if (r.status !== 200) throw new Error(`glewlwyd login: ${r.status} ${r.body}`);
		}
		// g_continue: what glewlwyd's login page appends once the user is signed in
		const res = await req(base, 'GET', env.AUTH_PATH + authzQuery('g' + w) + '&g_continue', { jar: st.jar });
		return codeOf(res, 'glewlwyd auth');
	},
	// authorization request -> interaction -> bench login form -> resume -> code
	async 'oidc-provider'(base, w) {
		const jar = new Map();
		const [u, p] = users[0];
		let r = await req(base, 'GET', env.AUTH_PATH + authzQuery('o' + w), { jar });
		const inter = r.headers.location;
		if (!inter || !inter.includes('/interaction/')) throw new Error(`oidc-provider auth: ${r.status} ${r.body.slice(0, 300)}`);
		r = await req(base, 'POST', new URL(inter, base).pathname + '/login', { jar,
			body: form({ username: u, password: p }), headers: { 'content-type': 'application/x-www-form-urlencoded' } });
		if (!r.headers.location) throw new Error(`oidc-provider login: ${r.status} ${r.body.slice(0, 300)}`);
		r = await req(base, 'GET', new URL(r.headers.location, base).pathname + new URL(r.headers.location, base).search, { jar });
		if (r.headers.location?.startsWith('/interaction/')) {
			const d = await req(base, 'GET', r.headers.location, { jar });
			throw new Error(`oidc-provider asks for more: ${d.body.slice(0, 600)}`);
		}
		return codeOf(r, 'oidc-provider resume');
	},
};

async function run(n, par, one) {
	const out = new Array(n);
	let next = 0;
	await Promise.all(Array.from({ length: par }, async (_, w) => {
		const st = {};
		while (next < n) {
			const i = next++;
			out[i] = await one(w, st, i);
		}
	}));
	return out;
}

if (mode === 'codes') {
	const [kind, base, n, par, outFile] = args;
	const codes = await run(+n, +par, (w, st) => flows[kind](base, w, st));
	writeFileSync(outFile, codes.map((code) => form({ grant_type: 'authorization_code', code,
		redirect_uri: env.REDIRECT_URI, code_verifier: VERIFIER })).join('\n') + '\n');
} else if (mode === 'logintx') {
	const [base, n, conns, outFile] = args;
	const lines = await run(+n, 8, async (w, st, i) => {
		const page = await req(base, 'GET', env.AUTH_PATH + authzQuery('l' + i));
		const tx = /name="tx" value="([^"]+)"/.exec(page.body)?.[1];
		if (!tx) throw new Error(`sealguard authorize: ${page.status} ${page.body.slice(0, 300)}`);
		const [, p] = users[0];
		return form({ tx, username: `lu${i % +conns}`, password: p });
	});
	writeFileSync(outFile, lines.join('\n') + '\n');
} else {
	console.error('usage: see the header of idm_codes.mjs');
	process.exit(2);
}
agent.destroy();
