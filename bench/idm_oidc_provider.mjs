// bench/idm_oidc_provider.mjs: the oidc-provider (npm, certified) peer of bench/idm.sh, configured
// like sealguard: one static confidential client (client_secret_basic), PKCE S256 required,
// ES256 for ID tokens and (JWT, RFC 9068) access tokens, client_credentials, introspection and
// revocation enabled, HTTPS on loopback with the bench's certificate, no access log. Storage is
// in memory (a Map; sealguard writes codes and grants to SQLite).
// Its login "page" is a bench-only form handler: POST /interaction/:uid/login with
// username + password (a fixed account, compared as is: password hashing is not measured).
// usage: node idm_oidc_provider.mjs CONFIG.json
//   {"port", "issuer", "cert", "key", "jwk", "client_id", "client_secret", "redirect_uri",
//    "username", "password"}
import { readFileSync } from 'node:fs';
import https from 'node:https';
import { createRequire } from 'node:module';

const conf = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const require = createRequire(process.env.OIDC_PROVIDER_DIR + '/');
const { default: Provider } = await import(require.resolve('oidc-provider'));

const JWT_RS = 'urn:bench:jwt';       // access tokens as ES256 JWTs (like sealguard's)
const OPAQUE_RS = 'urn:bench:opaque'; // oidc-provider only introspects its opaque tokens

// oidc-provider's bundled development adapter is an LRU of 1000 entries, fewer than the codes a
// run pre-generates; this one is the same in-memory store, unbounded (expired entries dropped).
const stores = new Map();
class MemoryAdapter {
	constructor(name) { this.name = name; }
	key(id) { return `${this.name}:${id}`; }
	async upsert(id, payload, expiresIn) {
		const exp = expiresIn ? Date.now() + expiresIn * 1000 : Infinity;
		stores.set(this.key(id), { payload, exp });
		if (payload.grantId) {
			const g = `grant:${payload.grantId}`;
			const l = stores.get(g)?.payload || [];
			l.push(this.key(id));
			stores.set(g, { payload: l, exp });
		}
		if (payload.uid) stores.set(`uid:${payload.uid}`, { payload: id, exp });
		if (payload.userCode) stores.set(`userCode:${payload.userCode}`, { payload: id, exp });
	}
	get(k) {
		const e = stores.get(k);
		if (!e) return undefined;
		if (e.exp < Date.now()) { stores.delete(k); return undefined; }
		return e.payload;
	}
	async find(id) { return this.get(this.key(id)); }
	async findByUid(uid) { const id = this.get(`uid:${uid}`); return id && this.find(id); }
	async findByUserCode(c) { const id = this.get(`userCode:${c}`); return id && this.find(id); }
	async consume(id) { const p = this.get(this.key(id)); if (p) p.consumed = Math.floor(Date.now() / 1000); }
	async destroy(id) { stores.delete(this.key(id)); }
	async revokeByGrantId(grantId) {
		for (const k of this.get(`grant:${grantId}`) || []) stores.delete(k);
		stores.delete(`grant:${grantId}`);
	}
}

const provider = new Provider(conf.issuer, {
	adapter: MemoryAdapter,
	clients: [{
		client_id: conf.client_id,
		client_secret: conf.client_secret,
		redirect_uris: [conf.redirect_uri],
		grant_types: ['authorization_code', 'refresh_token', 'client_credentials'],
		response_types: ['code'],
		token_endpoint_auth_method: 'client_secret_basic',
		id_token_signed_response_alg: 'ES256',
	}],
	jwks: { keys: [conf.jwk] },
	pkce: { required: () => true, methods: ['S256'] },
	scopes: ['openid', 'offline_access', 'api'],
	features: {
		devInteractions: { enabled: false },
		clientCredentials: { enabled: true },
		introspection: { enabled: true },
		revocation: { enabled: true },
		resourceIndicators: {
			enabled: true,
			defaultResource: () => JWT_RS,
			useGrantedResource: () => true,
			getResourceServerInfo: (ctx, resource) => {
				if (resource === JWT_RS)
					return { scope: 'api', audience: JWT_RS, accessTokenTTL: 600, accessTokenFormat: 'jwt', jwt: { sign: { alg: 'ES256' } } };
				if (resource === OPAQUE_RS)
					return { scope: 'api', audience: OPAQUE_RS, accessTokenTTL: 600, accessTokenFormat: 'opaque' };
				throw new Error('unknown resource');
			},
		},
	},
	findAccount: async (ctx, sub) => ({ accountId: sub, claims: async () => ({ sub }) }),
	ttl: { AuthorizationCode: 600, AccessToken: 600, ClientCredentials: 600, IdToken: 3600,
		Interaction: 3600, Session: 3600, Grant: 3600, RefreshToken: 86400 },
	interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
	cookies: { keys: ['sg-bench-cookie-key-0123456789abcdef'] },
	// the client is confidential; no refresh token unless offline_access (sealguard: always)
	issueRefreshToken: async () => true,
});

const callback = provider.callback();
async function readBody(req) {
	let s = '';
	for await (const chunk of req) s += chunk;
	return new URLSearchParams(s);
}
const server = https.createServer({ cert: readFileSync(conf.cert), key: readFileSync(conf.key), keepAliveTimeout: 600000 },
	async (req, res) => {
		const m = /^\/interaction\/([^/]+)\/login$/.exec(req.url);
		if (req.method === 'POST' && m) {
			try {
				const form = await readBody(req);
				const details = await provider.interactionDetails(req, res);
				if (form.get('username') !== conf.username || form.get('password') !== conf.password) {
					res.writeHead(401).end('wrong user name or password');
					return;
				}
				const grant = new provider.Grant({ accountId: conf.username, clientId: details.params.client_id });
				grant.addOIDCScope('openid offline_access api');
				grant.addResourceScope(JWT_RS, 'api');
				const grantId = await grant.save();
				await provider.interactionFinished(req, res,
					{ login: { accountId: conf.username }, consent: { grantId } }, { mergeWithLastSubmission: false });
			} catch (e) {
				res.writeHead(400).end(String(e));
			}
			return;
		}
		if (req.method === 'GET' && /^\/interaction\/[^/]+$/.test(req.url)) {
			// what the flow still asks for (diagnostics of the bench's code generator)
			try {
				const d = await provider.interactionDetails(req, res);
				res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ prompt: d.prompt, params: d.params }));
			} catch (e) {
				res.writeHead(400).end(String(e));
			}
			return;
		}
		callback(req, res);
	});
server.keepAliveTimeout = 600000;
server.headersTimeout = 601000;
server.listen(conf.port, '127.0.0.1', () => console.log('oidc-provider listening on', conf.port));
