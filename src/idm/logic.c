/* idm/logic.c: the SIM-S's pure decisions (see logic.h). */
#include "idm/logic.h"

#include "auth/jws.h"
#include "base/b64.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- forms ---- */

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* WHATWG application/x-www-form-urlencoded parsing: '+' is a space, %XX an octet. */
char *sg_idm_form_decode(const char *s, size_t n)
{
	char *o = malloc(n + 1);
	if (!o)
		return NULL;
	size_t j = 0;
	for (size_t i = 0; i < n; i++) {
		int c = (unsigned char)s[i];
		if (c == '+') {
			c = ' ';
		} else if (c == '%') {
			if (i + 2 >= n) {
				free(o);
				return NULL;
			}
			int a = hexval((unsigned char)s[i + 1]),
			    b = hexval((unsigned char)s[i + 2]);
			if (a < 0 || b < 0) {
				free(o);
				return NULL;
			}
			c = a * 16 + b;
			i += 2;
		}
		if (c == 0) {
			free(o);
			return NULL;
		}
		o[j++] = (char)c;
	}
	o[j] = '\0';
	return o;
}

int sg_idm_form_parse(const char *s, size_t len, struct sg_idm_form *f)
{
	f->kv = NULL;
	f->n = 0;
	size_t i = 0;
	while (i < len) {
		const char *amp = memchr(s + i, '&', len - i);
		size_t end = amp ? (size_t)(amp - s) : len;
		if (end > i) {
			const char *eq = memchr(s + i, '=', end - i);
			size_t nl = eq ? (size_t)(eq - (s + i)) : end - i;
			char *name = sg_idm_form_decode(s + i, nl);
			char *val = eq ? sg_idm_form_decode(eq + 1, end - i - nl - 1) : strdup("");
			struct sg_idm_kv *kv =
			    name && val ? realloc(f->kv, (f->n + 1) * sizeof *kv) : NULL;
			if (!kv) {
				free(name);
				if (val) {
					OPENSSL_cleanse(val, strlen(val));
					free(val);
				}
				sg_idm_form_free(f);
				return -1;
			}
			f->kv = kv;
			kv[f->n].name = name;
			kv[f->n].value = val;
			f->n++;
		}
		i = end + 1;
	}
	return 0;
}

const char *sg_idm_form_get(const struct sg_idm_form *f, const char *name)
{
	for (size_t i = 0; i < f->n; i++)
		if (strcmp(f->kv[i].name, name) == 0)
			return f->kv[i].value;
	return NULL;
}

size_t sg_idm_form_count(const struct sg_idm_form *f, const char *name)
{
	size_t c = 0;
	for (size_t i = 0; i < f->n; i++)
		c += strcmp(f->kv[i].name, name) == 0;
	return c;
}

void sg_idm_form_free(struct sg_idm_form *f)
{
	for (size_t i = 0; i < f->n; i++) {
		free(f->kv[i].name);
		OPENSSL_cleanse(f->kv[i].value, strlen(f->kv[i].value));
		free(f->kv[i].value);
	}
	free(f->kv);
	f->kv = NULL;
	f->n = 0;
}

static int unreserved(int c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       c == '-' || c == '.' || c == '_' || c == '~';
}

int sg_idm_url_append(char *out, size_t outlen, const char *name, const char *value)
{
	size_t len = strlen(out);
	const char *parts[2] = {name, value};
	for (int p = 0; p < 2; p++) {
		if (len + 1 >= outlen)
			return -1;
		out[len++] = p == 0 ? (strchr(out, '?') ? '&' : '?') : '=';
		for (const unsigned char *c = (const unsigned char *)parts[p]; *c; c++) {
			if (len + 4 >= outlen)
				return -1;
			if (unreserved(*c)) {
				out[len++] = (char)*c;
			} else {
				snprintf(out + len, 4, "%%%02X", *c);
				len += 3;
			}
		}
		out[len] = '\0';
	}
	return 0;
}

/* ---- scopes ---- */

static const struct {
	const char *scope, *aud;
} SCOPES[] = {
    {"openid", "sealguard:idm"}, {"seal:gm", "sealguard:gm"},   {"seal:km", "sealguard:km"},
    {"seal:kp", "sealguard:km"}, {"seal:ipp", "sealguard:idm"}, {"sdd", "sealguard:sdd"},
};
static const char *const AUDS[] = {"sealguard:idm", "sealguard:gm", "sealguard:km",
                                   "sealguard:sdd"};
#define NSCOPES (sizeof SCOPES / sizeof SCOPES[0])

/* Iterates the space-separated tokens of s: sets tok and len to the next one; 0 at the end. */
static int next_tok(const char **s, const char **tok, size_t *len)
{
	while (**s == ' ')
		(*s)++;
	if (!**s)
		return 0;
	*tok = *s;
	while (**s && **s != ' ')
		(*s)++;
	*len = (size_t)(*s - *tok);
	return 1;
}

static int has_tok(const char *list, const char *tok, size_t len)
{
	const char *t;
	size_t l;
	while (list && next_tok(&list, &t, &l))
		if (l == len && memcmp(t, tok, len) == 0)
			return 1;
	return 0;
}

const char *sg_idm_scope_audience(const char *scope)
{
	for (size_t i = 0; i < NSCOPES; i++)
		if (strcmp(SCOPES[i].scope, scope) == 0)
			return SCOPES[i].aud;
	return NULL;
}

static const char *aud_of(const char *tok, size_t len)
{
	for (size_t i = 0; i < NSCOPES; i++)
		if (strlen(SCOPES[i].scope) == len && memcmp(SCOPES[i].scope, tok, len) == 0)
			return SCOPES[i].aud;
	return NULL;
}

int sg_idm_scope_valid(const char *scope)
{
	if (!scope)
		return 0;
	const char *s = scope, *t;
	size_t l, n = 0;
	while (next_tok(&s, &t, &l)) {
		if (!aud_of(t, l))
			return 0;
		/* a repeated scope: count occurrences */
		const char *s2 = scope, *t2;
		size_t l2, c = 0;
		while (next_tok(&s2, &t2, &l2))
			c += l2 == l && memcmp(t2, t, l) == 0;
		if (c != 1)
			return 0;
		n++;
	}
	return n > 0;
}

int sg_idm_scope_has(const char *list, const char *token)
{
	return has_tok(list, token, strlen(token));
}

int sg_idm_scope_subset(const char *a, const char *b)
{
	const char *t;
	size_t l;
	while (a && next_tok(&a, &t, &l))
		if (!has_tok(b, t, l))
			return 0;
	return 1;
}

json_t *sg_idm_audiences(const char *scope)
{
	json_t *arr = json_array();
	for (size_t a = 0; arr && a < sizeof AUDS / sizeof AUDS[0]; a++) {
		const char *s = scope, *t;
		size_t l;
		while (s && next_tok(&s, &t, &l)) {
			const char *aud = aud_of(t, l);
			if (aud && strcmp(aud, AUDS[a]) == 0) {
				json_array_append_new(arr, json_string(AUDS[a]));
				break;
			}
		}
	}
	return arr;
}

int sg_idm_scope_for_resource(const char *scope, const char *resource, char *out, size_t outlen)
{
	if (!outlen)
		return -1;
	out[0] = '\0';
	size_t len = 0;
	const char *s = scope, *t;
	size_t l;
	while (s && next_tok(&s, &t, &l)) {
		const char *aud = aud_of(t, l);
		if (!aud || strcmp(aud, resource) != 0)
			continue;
		if (len + l + 2 > outlen)
			return -1;
		if (len)
			out[len++] = ' ';
		memcpy(out + len, t, l);
		len += l;
		out[len] = '\0';
	}
	return len ? 0 : -1;
}

static void copy_scope(const char *src, char *out, size_t outlen)
{
	snprintf(out, outlen, "%s", src);
}

void sg_idm_client_scopes(const char *registered, char *out, size_t outlen)
{
	/* I8a: UE clients may hold openid seal:gm seal:km sdd; registered lists narrow it. */
	copy_scope(registered && *registered ? registered : SG_IDM_SCOPES_UE_DEFAULT, out, outlen);
}

void sg_idm_valserver_scopes(const char *registered, int key_provisioning, char *out, size_t outlen)
{
	char tmp[256];
	copy_scope(registered && *registered ? registered : SG_IDM_SCOPES_VAL_DEFAULT, tmp,
	           sizeof tmp);
	/* seal:kp comes with the key-provisioning right only (TS 33.434 §5.8, SKeyProv) */
	out[0] = '\0';
	size_t len = 0;
	const char *s = tmp, *t;
	size_t l;
	while (next_tok(&s, &t, &l)) {
		if ((l == 7 && memcmp(t, "seal:kp", 7) == 0) || (l == 6 && !memcmp(t, "openid", 6)))
			continue;
		if (len + l + 2 > outlen)
			break;
		if (len)
			out[len++] = ' ';
		memcpy(out + len, t, l);
		len += l;
		out[len] = '\0';
	}
	if (key_provisioning && len + 9 < outlen)
		snprintf(out + len, outlen - len, "%sseal:kp", len ? " " : "");
}

/* ---- authorization request ---- */

static int b64url_chars(const char *s)
{
	for (; *s; s++)
		if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') ||
		      (*s >= '0' && *s <= '9') || *s == '-' || *s == '_'))
			return 0;
	return 1;
}

#define RESULT(o, e, d)                                                                            \
	do {                                                                                       \
		out->outcome = (o);                                                                \
		out->error = (e);                                                                  \
		out->description = (d);                                                            \
		return;                                                                            \
	} while (0)

void sg_idm_authz_check(const struct sg_idm_authz_req *q, struct sg_idm_authz_result *out)
{
	/* RFC 6749 §4.1.2.1: with a missing, invalid or mismatching client or redirect URI the
	 * user agent is NOT redirected (it could be an open redirector). */
	if (q->dup_client)
		RESULT(SG_IDM_AUTHZ_PAGE, "invalid_request",
		       "client_id or redirect_uri is repeated");
	if (!q->client_id || !*q->client_id)
		RESULT(SG_IDM_AUTHZ_PAGE, "invalid_request", "client_id is missing");
	if (!q->client_known)
		RESULT(SG_IDM_AUTHZ_PAGE, "invalid_client", "unknown client");
	if (!q->redirect_uri || !*q->redirect_uri)
		RESULT(SG_IDM_AUTHZ_PAGE, "invalid_request", "redirect_uri is missing");
	if (!q->redirect_ok)
		RESULT(SG_IDM_AUTHZ_PAGE, "invalid_request",
		       "redirect_uri is not registered for this client");
	/* From here errors go back to the client (I2: every parameter REQUIRED). */
	if (q->dup_other)
		RESULT(SG_IDM_AUTHZ_REDIRECT, "invalid_request", "a parameter is repeated");
	if (!q->response_type || !*q->response_type)
		RESULT(SG_IDM_AUTHZ_REDIRECT, "invalid_request", "response_type is missing");
	if (strcmp(q->response_type, "code") != 0)
		RESULT(SG_IDM_AUTHZ_REDIRECT, "unsupported_response_type",
		       "only response_type=code is supported");
	if (!q->state || !*q->state)
		RESULT(SG_IDM_AUTHZ_REDIRECT, "invalid_request", "state is missing");
	if (!q->scope || !*q->scope)
		RESULT(SG_IDM_AUTHZ_REDIRECT, "invalid_request", "scope is missing");
	if (!sg_idm_scope_has(q->scope, "openid"))
		RESULT(SG_IDM_AUTHZ_REDIRECT, "invalid_scope", "scope must contain openid");
	if (!sg_idm_scope_valid(q->scope))
		RESULT(SG_IDM_AUTHZ_REDIRECT, "invalid_scope", "unknown or repeated scope");
	if (!sg_idm_scope_subset(q->scope, q->allowed_scopes))
		RESULT(SG_IDM_AUTHZ_REDIRECT, "invalid_scope",
		       "scope is wider than the client may hold");
	if (!q->acr_values || !*q->acr_values)
		RESULT(SG_IDM_AUTHZ_REDIRECT, "invalid_request", "acr_values is missing");
	if (!sg_idm_scope_has(q->acr_values, SG_IDM_ACR_PASSWORD))
		RESULT(SG_IDM_AUTHZ_REDIRECT, "invalid_request",
		       "acr_values must include 3gpp:acr:password");
	/* RFC 7636 §4.4.1: a missing challenge or an unsupported method is invalid_request */
	if (!q->code_challenge || !*q->code_challenge)
		RESULT(SG_IDM_AUTHZ_REDIRECT, "invalid_request", "code challenge required");
	if (!q->code_challenge_method || !*q->code_challenge_method)
		RESULT(SG_IDM_AUTHZ_REDIRECT, "invalid_request",
		       "code_challenge_method is missing");
	if (strcmp(q->code_challenge_method, "S256") != 0)
		RESULT(SG_IDM_AUTHZ_REDIRECT, "invalid_request",
		       "transform algorithm not supported: only S256");
	if (strlen(q->code_challenge) != 43 || !b64url_chars(q->code_challenge))
		RESULT(SG_IDM_AUTHZ_REDIRECT, "invalid_request",
		       "code_challenge must be the 43-character S256 value");
	if (q->nonce && strlen(q->nonce) > 255)
		RESULT(SG_IDM_AUTHZ_REDIRECT, "invalid_request", "nonce is too long");
	if (strlen(q->state) > 512)
		RESULT(SG_IDM_AUTHZ_REDIRECT, "invalid_request", "state is too long");
	RESULT(SG_IDM_AUTHZ_OK, NULL, NULL);
}

/* ---- throttling ---- */

int64_t sg_idm_backoff_ms(unsigned failures, unsigned free_attempts, int64_t base_ms,
                          int64_t max_ms)
{
	if (failures < free_attempts)
		return 0;
	unsigned k = failures - free_attempts;
	int64_t d = base_ms;
	for (unsigned i = 0; i < k && d < max_ms; i++)
		d *= 2;
	return d < max_ms ? d : max_ms;
}

struct thr_entry {
	struct thr_entry *next;
	char *key;
	unsigned failures;
	int64_t until, last;
	int running;
};

#define THR_BUCKETS 1024

struct sg_idm_throttle {
	pthread_mutex_t mu;
	unsigned free_attempts;
	int64_t base_ms, max_ms;
	size_t n, max_entries;
	struct thr_entry *b[THR_BUCKETS];
};

static size_t thr_hash(const char *s)
{
	size_t h = 1469598103934665603ull;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ull;
	return h % THR_BUCKETS;
}

struct sg_idm_throttle *sg_idm_throttle_new(unsigned free_attempts, int64_t base_ms, int64_t max_ms,
                                            size_t max_entries)
{
	struct sg_idm_throttle *t = calloc(1, sizeof *t);
	if (!t)
		return NULL;
	pthread_mutex_init(&t->mu, NULL);
	t->free_attempts = free_attempts;
	t->base_ms = base_ms;
	t->max_ms = max_ms;
	t->max_entries = max_entries;
	return t;
}

void sg_idm_throttle_free(struct sg_idm_throttle *t)
{
	if (!t)
		return;
	for (size_t i = 0; i < THR_BUCKETS; i++)
		for (struct thr_entry *e = t->b[i], *nx; e; e = nx) {
			nx = e->next;
			free(e->key);
			free(e);
		}
	pthread_mutex_destroy(&t->mu);
	free(t);
}

static struct thr_entry *thr_find(struct sg_idm_throttle *t, const char *key, int create)
{
	size_t h = thr_hash(key);
	for (struct thr_entry *e = t->b[h]; e; e = e->next)
		if (strcmp(e->key, key) == 0)
			return e;
	if (!create || t->n >= t->max_entries)
		return NULL;
	struct thr_entry *e = calloc(1, sizeof *e);
	if (!e || !(e->key = strdup(key))) {
		free(e);
		return NULL;
	}
	e->next = t->b[h];
	t->b[h] = e;
	t->n++;
	return e;
}

int64_t sg_idm_throttle_begin(struct sg_idm_throttle *t, const char *key, int exclusive,
                              int64_t now_ms)
{
	pthread_mutex_lock(&t->mu);
	struct thr_entry *e = thr_find(t, key, 1);
	int64_t wait = 0;
	if (!e) {
		/* table full (an attack spraying names or addresses): refuse for a short while
		 * rather than run unthrottled */
		wait = t->base_ms;
	} else if (e->until > now_ms) {
		wait = e->until - now_ms;
	} else {
		/* attempts in flight count as failures to come: an account one at a time, an
		 * address at most as many at once as it has free attempts left (one once they are
		 * used up), so a burst of concurrent attempts cannot all run before the first
		 * failure is counted */
		unsigned cap = exclusive                        ? 1
		               : e->failures < t->free_attempts ? t->free_attempts - e->failures
		                                                : 1;
		if ((unsigned)e->running >= cap)
			wait = 1000;
		else
			e->running++;
	}
	pthread_mutex_unlock(&t->mu);
	return wait;
}

void sg_idm_throttle_end(struct sg_idm_throttle *t, const char *key, int exclusive, int success,
                         int64_t now_ms)
{
	pthread_mutex_lock(&t->mu);
	struct thr_entry *e = thr_find(t, key, success == 0);
	if (e) {
		if (e->running > 0)
			e->running--;
		if (success < 0) {
			/* not tried: nothing counts */
		} else if (success && exclusive) {
			e->failures = 0;
			e->until = 0;
		} else if (success) {
			/* an address's success is one account's: it takes back one failure, not
			 * all (a valid account must not launder guesses at the others) */
			if (e->failures)
				e->failures--;
		} else {
			e->failures++;
			e->last = now_ms;
			int64_t d =
			    sg_idm_backoff_ms(e->failures, t->free_attempts, t->base_ms, t->max_ms);
			e->until = d ? now_ms + d : 0;
		}
	}
	pthread_mutex_unlock(&t->mu);
}

void sg_idm_throttle_expire(struct sg_idm_throttle *t, int64_t now_ms)
{
	pthread_mutex_lock(&t->mu);
	for (size_t i = 0; i < THR_BUCKETS; i++) {
		struct thr_entry **pp = &t->b[i];
		while (*pp) {
			struct thr_entry *e = *pp;
			if (!e->running && e->until <= now_ms && e->last + t->max_ms <= now_ms) {
				*pp = e->next;
				free(e->key);
				free(e);
				t->n--;
			} else {
				pp = &e->next;
			}
		}
	}
	pthread_mutex_unlock(&t->mu);
}

/* ---- grants of removed clients and disabled users ---- */

int64_t sg_idm_grant_revoke_until(unsigned access_ttl_s, unsigned id_ttl_s, int64_t now)
{
	unsigned ttl = access_ttl_s > id_ttl_s ? access_ttl_s : id_ttl_s;
	return now + ((int64_t)ttl + SG_JWS_MAX_LEEWAY) * 1000;
}

/* SHA-256 fetched once: EVP_sha256() in EVP_DigestInit_ex makes OpenSSL 3 look the
 * implementation up on every call, and the gid is derived on every client_credentials token. */
static EVP_MD *g_gid_md;
static pthread_once_t g_gid_md_once = PTHREAD_ONCE_INIT;
static void gid_md_fetch(void)
{
	g_gid_md = EVP_MD_fetch(NULL, "SHA2-256", NULL);
}

int sg_idm_valserver_gid(const char *name, int64_t created_at,
                         char out[SG_IDM_VALSERVER_GID_LEN + 1])
{
	pthread_once(&g_gid_md_once, gid_md_fetch);
	static const char label[] = "sealguard valserver grant"; /* with its NUL */
	char t[24];
	int tl = snprintf(t, sizeof t, "%lld", (long long)created_at);
	unsigned char md[32] = {0};
	unsigned int mdlen = 0;
	EVP_MD_CTX *c = EVP_MD_CTX_new();
	/* name with its NUL: no two (name, time) pairs hash the same input */
	int ok = c && EVP_DigestInit_ex(c, g_gid_md ? g_gid_md : EVP_sha256(), NULL) &&
	         EVP_DigestUpdate(c, label, sizeof label) &&
	         EVP_DigestUpdate(c, name, strlen(name) + 1) &&
	         EVP_DigestUpdate(c, t, (size_t)(tl > 0 ? tl : 0)) &&
	         EVP_DigestFinal_ex(c, md, &mdlen) && mdlen == sizeof md;
	EVP_MD_CTX_free(c);
	out[0] = '\0';
	if (!ok)
		return -1;
	sg_b64url_encode(md, 16, out);
	return 0;
}
