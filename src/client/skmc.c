/* client/skmc.c: see client/skmc.h. TS 33.434 §5.3, §5.8; TS 29.549 ss-kpp, ss-kir; R2. */
#include "client/skmc.h"

#include "base/file.h"
#include "client/valsrv.h"
#include "http/client.h"
#include "km/logic.h"

#include <cjose/cjose.h>
#include <errno.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

void sg_skmc_secret_free(char *s)
{
	if (s) {
		OPENSSL_cleanse(s, strlen(s));
		free(s);
	}
}

/* ---- key pair --------------------------------------------------------------------------- */

json_t *sg_skmc_key_public(const char *priv_jwk)
{
	json_t *j = priv_jwk ? json_loads(priv_jwk, 0, NULL) : NULL;
	if (!j)
		return NULL;
	json_t *d = json_object_get(j, "d");
	if (json_is_string(d))
		OPENSSL_cleanse((void *)json_string_value(d), json_string_length(d));
	json_object_del(j, "d");
	json_t *canon = NULL;
	char kid[64];
	struct sg_km_invalid why;
	json_object_del(j, "kid");
	json_object_del(j, "alg");
	sg_km_jwk_check(j, &canon, kid, &why);
	json_decref(j);
	return canon;
}

sg_err sg_skmc_key_generate(char **priv_jwk)
{
	*priv_jwk = NULL;
	cjose_err ce = {0};
	cjose_jwk_t *k = cjose_jwk_create_EC_random(CJOSE_JWK_EC_P_256, &ce);
	char *s = k ? cjose_jwk_to_json(k, true, &ce) : NULL;
	cjose_jwk_release(k);
	if (!s)
		return SG_ERR_INTERNAL;
	json_t *j = json_loads(s, 0, NULL);
	OPENSSL_cleanse(s, strlen(s));
	cjose_get_dealloc()(s);
	if (!j)
		return SG_ERR_NOMEM;
	/* kid = RFC 7638 thumbprint of the public half, as the SKM-S computes it */
	char *tmp = json_dumps(j, JSON_COMPACT);
	json_t *pub = tmp ? sg_skmc_key_public(tmp) : NULL;
	sg_skmc_secret_free(tmp);
	sg_err e = SG_ERR_INTERNAL;
	if (pub) {
		json_object_set(j, "kid", json_object_get(pub, "kid"));
		json_object_set_new(j, "use", json_string("enc"));
		json_object_set_new(j, "alg", json_string("ECDH-ES"));
		*priv_jwk = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
		e = *priv_jwk ? SG_OK : SG_ERR_NOMEM;
	}
	json_decref(pub);
	json_t *d = json_object_get(j, "d");
	if (json_is_string(d))
		OPENSSL_cleanse((void *)json_string_value(d), json_string_length(d));
	json_decref(j);
	return e;
}

sg_err sg_skmc_key_save(const char *path, const char *priv_jwk, char *err, size_t errlen)
{
	if (sg_file_write_atomic(path, priv_jwk, strlen(priv_jwk), 0600) != SG_OK)
		return sg_fail(err, errlen, SG_ERR_IO, "cannot write the SKM-C key %s: %s", path,
		               strerror(errno));
	return SG_OK;
}

sg_err sg_skmc_key_load(const char *path, char **priv_jwk, char *err, size_t errlen)
{
	*priv_jwk = NULL;
	struct stat sb;
	if (stat(path, &sb) != 0)
		return sg_fail(err, errlen, SG_ERR_NOTFOUND,
		               "no SKM-C key %s (run `sealguard key register` first)", path);
	if (sb.st_mode & 077)
		return sg_fail(err, errlen, SG_ERR_DENIED,
		               "%s is accessible by others (mode %03o): refusing the SKM-C key",
		               path, (unsigned)(sb.st_mode & 0777));
	char *s = NULL;
	size_t n = 0;
	if (sg_file_read(path, 8192, &s, &n) != SG_OK)
		return sg_fail(err, errlen, SG_ERR_IO, "cannot read %s", path);
	json_t *j = json_loadb(s, n, 0, NULL);
	int ok = j && json_is_string(json_object_get(j, "d"));
	json_decref(j);
	if (!ok) {
		if (s)
			OPENSSL_cleanse(s, n);
		free(s);
		return sg_fail(err, errlen, SG_ERR_INVALID, "%s is not a private JWK", path);
	}
	*priv_jwk = s;
	return SG_OK;
}

/* ---- opening ---------------------------------------------------------------------------- */

void sg_skmc_records_free(json_t *records)
{
	size_t i;
	json_t *r;
	json_array_foreach(records, i, r)
	{
		json_t *k = json_object_get(r, "key");
		if (json_is_string(k))
			OPENSSL_cleanse((void *)json_string_value(k), json_string_length(k));
	}
	json_decref(records);
}

static json_t *decrypt_json(const char *priv, const char *jwe, char *err, size_t errlen, sg_err *e)
{
	unsigned char *pt = NULL;
	size_t n = 0;
	*e = sg_km_jwe_decrypt(priv, jwe, &pt, &n, err, errlen);
	if (*e != SG_OK)
		return NULL;
	json_t *j = json_loadb((const char *)pt, n, 0, NULL);
	OPENSSL_cleanse(pt, n);
	free(pt);
	if (!j)
		*e = sg_fail(err, errlen, SG_ERR_PROTO, "the decrypted key record is not JSON");
	return j;
}

static int same_str(const json_t *a, const json_t *b, const char *k)
{
	const char *x = json_string_value(json_object_get(a, k));
	const char *y = json_string_value(json_object_get(b, k));
	return x && y && !strcmp(x, y);
}

/* Decrypts every keyInfo of a KM-UU response; each record must name the payloadId, version and
 * `scope` member (valServiceId, or valGroupId for group keys) of its envelope. */
static sg_err open_records(const char *priv_jwk, const json_t *response, const char *scope,
                           json_t **records, char *err, size_t errlen)
{
	*records = NULL;
	const json_t *recs = json_object_get(response, "keyRecords");
	if (!json_is_array(recs))
		return sg_fail(err, errlen, SG_ERR_PROTO, "not a SEAL KM Response (keyRecords)");
	json_t *out = json_array();
	size_t i;
	const json_t *r;
	sg_err e = SG_OK;
	json_array_foreach(recs, i, r)
	{
		const char *jwe = json_string_value(json_object_get(r, "keyInfo"));
		if (!jwe) {
			e = sg_fail(err, errlen, SG_ERR_PROTO, "key record %zu has no keyInfo", i);
			break;
		}
		json_t *rec = decrypt_json(priv_jwk, jwe, err, errlen, &e);
		if (!rec)
			break;
		/* the envelope and the encrypted record must agree (no swapped records) */
		if (!same_str(r, rec, "payloadId") || !same_str(r, rec, scope) ||
		    json_integer_value(json_object_get(r, "version")) !=
		        json_integer_value(json_object_get(rec, "version")) ||
		    !json_is_string(json_object_get(rec, "key"))) {
			json_t *a = json_array();
			json_array_append_new(a, rec);
			sg_skmc_records_free(a);
			e = sg_fail(err, errlen, SG_ERR_PROTO,
			            "key record %zu does not match its envelope", i);
			break;
		}
		json_array_append_new(out, rec);
	}
	if (e != SG_OK) {
		sg_skmc_records_free(out);
		return e;
	}
	*records = out;
	return SG_OK;
}

sg_err sg_skmc_open_response(const char *priv_jwk, const json_t *response, json_t **records,
                             char *err, size_t errlen)
{
	return open_records(priv_jwk, response, "valServiceId", records, err, errlen);
}

sg_err sg_skmc_open_key_info(const char *priv_jwk, const json_t *val_key_info, json_t **records,
                             char *err, size_t errlen)
{
	*records = NULL;
	const char *jwe = json_string_value(json_object_get(val_key_info, "keyInfo"));
	if (!jwe)
		return sg_fail(err, errlen, SG_ERR_PROTO, "not a ValKeyInfo (keyInfo)");
	sg_err e;
	json_t *pt = decrypt_json(priv_jwk, jwe, err, errlen, &e);
	if (!pt)
		return e;
	json_t *recs = json_object_get(pt, "keyRecords");
	if (!json_is_array(recs)) {
		json_decref(pt);
		return sg_fail(err, errlen, SG_ERR_PROTO, "keyInfo holds no keyRecords");
	}
	*records = json_incref(recs);
	json_decref(pt);
	return SG_OK;
}

/* ---- HTTP ------------------------------------------------------------------------------- */

/* Turns a non-2xx answer into SG_ERR_DENIED with "STATUS CAUSE: detail". */
static sg_err answer(const struct sg_http_response *resp, int want, json_t **body, char *err,
                     size_t errlen)
{
	json_t *j = resp->body.len
	                ? json_loadb((const char *)resp->body.data, resp->body.len, 0, NULL)
	                : NULL;
	if (resp->status != want) {
		const char *cause = json_string_value(json_object_get(j, "cause"));
		const char *detail = json_string_value(json_object_get(j, "detail"));
		sg_err e = sg_fail(err, errlen, SG_ERR_DENIED, "HTTP %ld %s: %s", resp->status,
		                   cause ? cause : "-", detail ? detail : "(no detail)");
		json_decref(j);
		return e;
	}
	if (body) {
		if (!j && want != 204)
			return sg_fail(err, errlen, SG_ERR_PROTO, "the answer is not JSON");
		*body = j;
	} else {
		json_decref(j);
	}
	return SG_OK;
}

static sg_err ue_call(const struct sg_skmc_ue *c, const char *path, const json_t *body,
                      json_t **out, char *err, size_t errlen)
{
	if (!c->base_url || strncmp(c->base_url, "https://", 8))
		return sg_fail(err, errlen, SG_ERR_INVALID, "KM-UU needs an https:// URL");
	if (!c->access_token)
		return sg_fail(err, errlen, SG_ERR_INVALID, "no access token");
	struct sg_http_client_conf hc = {
	    .tls = {.mode = SG_TLS_SERVER_AUTH, .ca = c->ca, .crl = c->crl},
	    .timeout_ms = c->timeout_ms ? c->timeout_ms : 30000,
	};
	struct sg_http_client *h = NULL;
	sg_err e = sg_http_client_new(&hc, &h, err, errlen);
	if (e != SG_OK)
		return e;
	char url[1024];
	snprintf(url, sizeof url, "%s%s", c->base_url, path);
	size_t al = strlen(c->access_token) + 32;
	char *auth = malloc(al);
	char *text = json_dumps(body, JSON_COMPACT);
	if (!auth || !text) {
		free(auth);
		free(text);
		sg_http_client_free(h);
		return sg_fail(err, errlen, SG_ERR_NOMEM, "out of memory");
	}
	snprintf(auth, al, "Authorization: Bearer %s", c->access_token);
	const char *hdrs[] = {auth, "Content-Type: application/json", "Accept: application/json",
	                      NULL};
	struct sg_http_response resp = {0};
	e = sg_http_client_request(h, "POST", url, hdrs, text, strlen(text), &resp, err, errlen);
	OPENSSL_cleanse(auth, al);
	free(auth);
	free(text);
	if (e == SG_OK)
		e = answer(&resp, !strcmp(path, "/km/v1/skmc-keys") ? 201 : 200, out, err, errlen);
	sg_http_response_free(&resp);
	sg_http_client_free(h);
	return e;
}

/* One POST of the registration over KM-UU or KM-S (a path under /km/v1). */
typedef sg_err (*reg_call_fn)(void *ctx, const char *path, const json_t *body, json_t **out,
                              char *err, size_t errlen);

/* R2 key continuity: replacing the registered SKM-C key (or its skmcUri) takes a proof that the
 * caller holds it. The SKM-S sends the proof encrypted to the registered key, next to the
 * thumbprint of the key it lets in; held_jwk (the registered key's private half) opens it. A
 * challenge for any other key is refused: one a party in the path asked for its own key must
 * not be answered with a proof it could use. */
static sg_err registration_proof(reg_call_fn call, void *ctx, const json_t *pub,
                                 const char *held_jwk, char proof[SG_KM_PROOF_LEN + 1], char *err,
                                 size_t errlen)
{
	*proof = '\0';
	json_t *b = json_pack("{s:O}", "jwk", (json_t *)pub), *r = NULL;
	if (!b)
		return sg_fail(err, errlen, SG_ERR_NOMEM, "out of memory");
	sg_err e = call(ctx, "/km/v1/skmc-keys/challenge", b, &r, err, errlen);
	json_decref(b);
	const char *jwe = json_string_value(json_object_get(r, "challenge"));
	if (e == SG_OK && !jwe)
		e = sg_fail(err, errlen, SG_ERR_PROTO, "the challenge answer has no challenge");
	json_t *pt = e == SG_OK ? decrypt_json(held_jwk, jwe, err, errlen, &e) : NULL;
	json_decref(r);
	if (!pt)
		return e == SG_ERR_DENIED ? sg_fail(err, errlen, SG_ERR_DENIED,
		                                    "the registered SKM-C key is not the one kept "
		                                    "here: its challenge does not open")
		                          : e;
	const char *p = json_string_value(json_object_get(pt, "proof"));
	const char *kid = json_string_value(json_object_get(pt, "kid"));
	const char *mine = json_string_value(json_object_get(pub, "kid"));
	if (!kid || !mine || strcmp(kid, mine))
		e = sg_fail(
		    err, errlen, SG_ERR_DENIED,
		    "the challenge is for another key than the one being registered: refused");
	else if (!p || strlen(p) != SG_KM_PROOF_LEN)
		e = sg_fail(err, errlen, SG_ERR_PROTO, "the challenge holds no proof");
	else
		memcpy(proof, p, SG_KM_PROOF_LEN + 1);
	json_decref(pt);
	return e;
}

/* Registers priv_jwk's public half. When another key (or another skmcUri) is registered
 * (409 SKMC_KEY_CONFLICT), proves holding it with prev_jwk, or with priv_jwk itself when
 * prev_jwk is NULL (the same key, a new skmcUri), and registers again. Registering the key
 * that is registered already asks for no proof: a --new whose answer was lost finishes so. */
static sg_err do_register(reg_call_fn call, void *ctx, const char *priv_jwk, const char *prev_jwk,
                          const char *skmc_uri, json_t **resp, char *err, size_t errlen)
{
	json_t *pub = sg_skmc_key_public(priv_jwk), *r = NULL;
	json_t *b = pub ? json_pack("{s:o}", "jwk", pub) : NULL;
	if (!b)
		return sg_fail(err, errlen, SG_ERR_INVALID, "the SKM-C key is not a P-256 JWK");
	if (skmc_uri)
		json_object_set_new(b, "skmcUri", json_string(skmc_uri));
	sg_err e = call(ctx, "/km/v1/skmc-keys", b, &r, err, errlen);
	if (e == SG_ERR_DENIED && strstr(err, " SKMC_KEY_CONFLICT:")) {
		char proof[SG_KM_PROOF_LEN + 1];
		e = registration_proof(call, ctx, pub, prev_jwk ? prev_jwk : priv_jwk, proof, err,
		                       errlen);
		if (e == SG_OK) {
			json_object_set_new(b, "proof", json_string(proof));
			OPENSSL_cleanse(proof, sizeof proof);
			e = call(ctx, "/km/v1/skmc-keys", b, &r, err, errlen);
		}
	}
	json_decref(b);
	if (resp)
		*resp = r;
	else
		json_decref(r);
	return e;
}

static sg_err ue_reg_call(void *ctx, const char *path, const json_t *body, json_t **out, char *err,
                          size_t errlen)
{
	return ue_call(ctx, path, body, out, err, errlen);
}

sg_err sg_skmc_ue_register(const struct sg_skmc_ue *c, const char *priv_jwk, const char *prev_jwk,
                           const char *skmc_uri, json_t **resp, char *err, size_t errlen)
{
	return do_register(ue_reg_call, (void *)c, priv_jwk, prev_jwk, skmc_uri, resp, err, errlen);
}

sg_err sg_skmc_ue_request(const struct sg_skmc_ue *c, const char *priv_jwk, const char *val_service,
                          const char *const *ids, size_t n, json_t **response, json_t **records,
                          char *err, size_t errlen)
{
	if (response)
		*response = NULL;
	if (records)
		*records = NULL;
	json_t *b = json_pack("{s:s}", "valServiceId", val_service);
	if (b && n) {
		json_t *a = json_array();
		for (size_t i = 0; i < n; i++)
			json_array_append_new(a, json_string(ids[i]));
		json_object_set_new(b, "payloadIds", a);
	}
	json_t *r = NULL;
	sg_err e = b ? ue_call(c, "/km/v1/key-requests", b, &r, err, errlen) : SG_ERR_NOMEM;
	json_decref(b);
	if (e == SG_OK && records)
		e = sg_skmc_open_response(priv_jwk, r, records, err, errlen);
	if (e == SG_OK && response)
		*response = json_incref(r);
	json_decref(r);
	return e;
}

sg_err sg_skmc_ue_group_request(const struct sg_skmc_ue *c, const char *priv_jwk,
                                const char *val_group, json_t **response, json_t **records,
                                char *err, size_t errlen)
{
	if (response)
		*response = NULL;
	if (records)
		*records = NULL;
	if (!val_group || !*val_group)
		return sg_fail(err, errlen, SG_ERR_INVALID, "no VAL group id");
	json_t *b = json_pack("{s:s}", "valGroupId", val_group), *r = NULL;
	sg_err e = b ? ue_call(c, "/km/v1/group-key-requests", b, &r, err, errlen) : SG_ERR_NOMEM;
	json_decref(b);
	if (e == SG_OK && records)
		e = open_records(priv_jwk, r, "valGroupId", records, err, errlen);
	if (e == SG_OK && response)
		*response = json_incref(r);
	json_decref(r);
	return e;
}

/* ---- VAL server ------------------------------------------------------------------------- */

static sg_err vs_call(struct sg_valsrv *v, const char *method, const char *url, const json_t *body,
                      int want, json_t **out, char *err, size_t errlen)
{
	char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
	if (body && !text)
		return sg_fail(err, errlen, SG_ERR_NOMEM, "out of memory");
	struct sg_http_response resp = {0};
	sg_err e = sg_valsrv_request(v, method, url, text ? "application/json" : NULL, text,
	                             text ? strlen(text) : 0, &resp, err, errlen);
	if (text) {
		OPENSSL_cleanse(text, strlen(text)); /* a VALKeyPpReq may carry a payload */
		free(text);
	}
	if (e == SG_OK)
		e = answer(&resp, want, out, err, errlen);
	sg_http_response_free(&resp);
	return e;
}

struct vs_ctx {
	struct sg_valsrv *v;
	const char *base_url;
};

static sg_err vs_reg_call(void *ctx, const char *path, const json_t *body, json_t **out, char *err,
                          size_t errlen)
{
	const struct vs_ctx *x = ctx;
	char url[1024];
	snprintf(url, sizeof url, "%s%s", x->base_url, path);
	return vs_call(x->v, "POST", url, body, strcmp(path, "/km/v1/skmc-keys") ? 200 : 201, out,
	               err, errlen);
}

sg_err sg_skmc_vs_register(struct sg_valsrv *v, const char *base_url, const char *priv_jwk,
                           const char *prev_jwk, const char *skmc_uri, json_t **resp, char *err,
                           size_t errlen)
{
	struct vs_ctx x = {v, base_url};
	return do_register(vs_reg_call, &x, priv_jwk, prev_jwk, skmc_uri, resp, err, errlen);
}

sg_err sg_skmc_vs_provision(struct sg_valsrv *v, const char *base_url, const json_t *req,
                            json_t **resp, char *err, size_t errlen)
{
	char url[1024];
	snprintf(url, sizeof url, "%s/ss-kpp/v1/request", base_url);
	json_t *r = NULL;
	sg_err e = vs_call(v, "POST", url, req, 200, &r, err, errlen);
	if (resp)
		*resp = r;
	else
		json_decref(r);
	return e;
}

/* RFC 3986 percent-encoding of everything but unreserved characters. */
static void pct(const char *in, char *out, size_t cap)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t o = 0;
	for (; *in && o + 4 < cap; in++) {
		unsigned char c = (unsigned char)*in;
		if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		    strchr("-._~", c)) {
			out[o++] = (char)c;
		} else {
			out[o++] = '%';
			out[o++] = hex[c >> 4];
			out[o++] = hex[c & 15];
		}
	}
	out[o] = '\0';
}

sg_err sg_skmc_vs_info(struct sg_valsrv *v, const char *base_url, const char *priv_jwk,
                       const char *val_service, const json_t *target, json_t **info,
                       json_t **records, char *err, size_t errlen)
{
	if (info)
		*info = NULL;
	if (records)
		*records = NULL;
	char svc[400], tgt[1200] = "", url[2048];
	pct(val_service, svc, sizeof svc);
	if (target) {
		char *t = json_dumps(target, JSON_COMPACT);
		if (!t)
			return sg_fail(err, errlen, SG_ERR_NOMEM, "out of memory");
		char enc[1100];
		pct(t, enc, sizeof enc);
		free(t);
		snprintf(tgt, sizeof tgt, "&val-tgt-ue=%s", enc);
	}
	snprintf(url, sizeof url, "%s/ss-kir/v1/key-records?val-service-id=%s%s", base_url, svc,
	         tgt);
	json_t *r = NULL;
	sg_err e = vs_call(v, "GET", url, NULL, 200, &r, err, errlen);
	if (e == SG_OK && records)
		e = sg_skmc_open_key_info(priv_jwk, r, records, err, errlen);
	if (e == SG_OK && info)
		*info = json_incref(r);
	json_decref(r);
	return e;
}

sg_err sg_skmc_vs_revoke(struct sg_valsrv *v, const char *base_url, const char *val_service,
                         const char *payload_id, char *err, size_t errlen)
{
	char svc[400], id[400], url[1024];
	pct(val_service, svc, sizeof svc);
	pct(payload_id, id, sizeof id);
	snprintf(url, sizeof url, "%s/km/v1/keys/%s/%s", base_url, svc, id);
	return vs_call(v, "DELETE", url, NULL, 204, NULL, err, errlen);
}
