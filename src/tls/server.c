/* tls/server.c: a server-side TLS endpoint (TS 33.210 §6.2 profile) whose certificate, key, CA,
 * CRL and PSK file can be reloaded while other threads accept connections; ALPN selection
 * (TS 29.549 §6.3: HTTP/1.1 mandatory, HTTP/2 recommended) and stateless session tickets with
 * rotating keys shared across reloads. The same reloading serves long-lived client contexts
 * (sg_tls_client: a renewed CRL or own certificate reaches new connections). */
#include "tls/tls.h"

#include "base/clock.h"
#include "base/err.h"
#include "base/log.h"
#include "base/rand.h"

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define SG_TICKET_ROTATE_DEFAULT 3600

struct ticket_key {
	unsigned char name[16];
	unsigned char aes[32];
	unsigned char hmac[32];
	int64_t created_ms; /* monotonic */
	int valid;
};

struct file_stamp {
	int present;
	dev_t dev;
	ino_t ino;
	off_t size;
	struct timespec mtim;
};

enum { F_CERT, F_KEY, F_CA, F_CRL, F_PSK, F_N };

struct sg_tls_server {
	pthread_mutex_t mu; /* guards ctx and stamps */
	SSL_CTX *ctx;
	struct sg_tls_conf conf; /* strings owned (copied) */
	int client;              /* a client context (sg_tls_client) */
	int alpn_h2;
	struct file_stamp stamps[F_N];

	pthread_mutex_t tk_mu; /* guards the ticket keys */
	struct ticket_key cur, prev;
	int rotate_s;
	int tickets;
};

static void conf_free(struct sg_tls_conf *c)
{
	free((char *)c->cert);
	free((char *)c->key);
	free((char *)c->ca);
	free((char *)c->crl);
	free((char *)c->min_version);
	free((char *)c->max_version);
	free((char *)c->ciphersuites);
	free((char *)c->ciphers);
	free((char *)c->groups);
	free((char *)c->sigalgs);
	free((char *)c->psk_file);
	free((char *)c->psk_identity);
	memset(c, 0, sizeof *c);
}

static int dup_str(const char **dst, const char *src)
{
	*dst = NULL;
	if (!src)
		return 0;
	*dst = strdup(src);
	return *dst ? 0 : -1;
}

static int conf_copy(struct sg_tls_conf *d, const struct sg_tls_conf *s)
{
	memset(d, 0, sizeof *d);
	d->mode = s->mode;
	d->session_tickets = s->session_tickets;
	d->ticket_rotate_s = s->ticket_rotate_s;
	if (dup_str(&d->cert, s->cert) || dup_str(&d->key, s->key) || dup_str(&d->ca, s->ca) ||
	    dup_str(&d->crl, s->crl) || dup_str(&d->min_version, s->min_version) ||
	    dup_str(&d->max_version, s->max_version) ||
	    dup_str(&d->ciphersuites, s->ciphersuites) || dup_str(&d->ciphers, s->ciphers) ||
	    dup_str(&d->groups, s->groups) || dup_str(&d->sigalgs, s->sigalgs) ||
	    dup_str(&d->psk_file, s->psk_file) || dup_str(&d->psk_identity, s->psk_identity)) {
		conf_free(d);
		return -1;
	}
	return 0;
}

static void stamp_one(struct file_stamp *st, const char *path)
{
	struct stat sb;
	memset(st, 0, sizeof *st);
	if (!path || stat(path, &sb) != 0)
		return;
	st->present = 1;
	st->dev = sb.st_dev;
	st->ino = sb.st_ino;
	st->size = sb.st_size;
	st->mtim = sb.st_mtim;
}

static void stamp_all(const struct sg_tls_conf *c, struct file_stamp out[F_N])
{
	stamp_one(&out[F_CERT], c->cert);
	stamp_one(&out[F_KEY], c->key);
	stamp_one(&out[F_CA], c->ca);
	stamp_one(&out[F_CRL], c->crl);
	stamp_one(&out[F_PSK], c->psk_file);
}

static int stamps_equal(const struct file_stamp *a, const struct file_stamp *b)
{
	return a->present == b->present && a->dev == b->dev && a->ino == b->ino &&
	       a->size == b->size && a->mtim.tv_sec == b->mtim.tv_sec &&
	       a->mtim.tv_nsec == b->mtim.tv_nsec;
}

/* ---- ALPN (RFC 7301; TS 29.549 §6.3) ------------------------------------------------------ */

static int alpn_select_cb(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                          const unsigned char *in, unsigned int inlen, void *arg)
{
	(void)ssl;
	const struct sg_tls_server *srv = arg;
	const unsigned char *h1 = NULL;
	for (unsigned int i = 0; i < inlen;) {
		unsigned int l = in[i];
		if (i + 1 + l > inlen)
			break;
		const unsigned char *p = in + i + 1;
		if (srv->alpn_h2 && l == 2 && !memcmp(p, "h2", 2)) {
			*out = p;
			*outlen = (unsigned char)l;
			return SSL_TLSEXT_ERR_OK;
		}
		if (l == 8 && !memcmp(p, "http/1.1", 8) && !h1)
			h1 = p;
		i += 1 + l;
	}
	if (h1) {
		*out = h1;
		*outlen = 8;
		return SSL_TLSEXT_ERR_OK;
	}
	return SSL_TLSEXT_ERR_ALERT_FATAL; /* no_application_protocol (RFC 7301 §3.2) */
}

/* ---- session tickets (RFC 5077 / RFC 8446 §4.6.1) ----------------------------------------- */

static int new_ticket_key(struct ticket_key *k)
{
	if (sg_random_bytes(k->name, sizeof k->name) || sg_random_bytes(k->aes, sizeof k->aes) ||
	    sg_random_bytes(k->hmac, sizeof k->hmac))
		return -1;
	k->created_ms = sg_mono_ms();
	k->valid = 1;
	return 0;
}

static void wipe_key(struct ticket_key *k)
{
	OPENSSL_cleanse(k, sizeof *k);
}

/* Rotates when the current key is older than rotate_s; the previous key stays for decryption
 * for one more period. Caller holds tk_mu. */
static void rotate_if_due(struct sg_tls_server *srv)
{
	int64_t now = sg_mono_ms();
	int64_t life = (int64_t)srv->rotate_s * 1000;
	if (srv->prev.valid && now - srv->prev.created_ms >= 2 * life)
		wipe_key(&srv->prev);
	if (!srv->cur.valid || now - srv->cur.created_ms >= life) {
		struct ticket_key nk;
		if (new_ticket_key(&nk) != 0) {
			wipe_key(&nk);
			return;
		}
		wipe_key(&srv->prev);
		if (srv->cur.valid)
			srv->prev = srv->cur;
		srv->cur = nk;
		wipe_key(&nk);
	}
}

static int ticket_key_cb(SSL *ssl, unsigned char key_name[16], unsigned char *iv,
                         EVP_CIPHER_CTX *cctx, EVP_MAC_CTX *hctx, int enc)
{
	struct sg_tls_server *srv = SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));
	if (!srv)
		return -1;
	struct ticket_key k;
	int ret = 1;
	pthread_mutex_lock(&srv->tk_mu);
	rotate_if_due(srv);
	if (enc) {
		if (!srv->cur.valid) {
			pthread_mutex_unlock(&srv->tk_mu);
			return -1;
		}
		k = srv->cur;
	} else if (srv->cur.valid && !memcmp(key_name, srv->cur.name, 16)) {
		k = srv->cur;
	} else if (srv->prev.valid && !memcmp(key_name, srv->prev.name, 16)) {
		k = srv->prev;
		ret = 2; /* valid, but issue a ticket under the current key */
	} else {
		pthread_mutex_unlock(&srv->tk_mu);
		return 0; /* unknown key: full handshake */
	}
	pthread_mutex_unlock(&srv->tk_mu);

	const EVP_CIPHER *cipher = EVP_aes_256_cbc();
	int ivlen = EVP_CIPHER_get_iv_length(cipher);
	OSSL_PARAM params[3];
	params[0] = OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, k.hmac, sizeof k.hmac);
	params[1] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0);
	params[2] = OSSL_PARAM_construct_end();
	if (enc) {
		memcpy(key_name, k.name, 16);
		if (sg_random_bytes(iv, (size_t)ivlen) ||
		    EVP_EncryptInit_ex(cctx, cipher, NULL, k.aes, iv) != 1)
			ret = -1;
	} else if (EVP_DecryptInit_ex(cctx, cipher, NULL, k.aes, iv) != 1) {
		ret = -1;
	}
	if (ret > 0 && EVP_MAC_CTX_set_params(hctx, params) != 1)
		ret = -1;
	wipe_key(&k);
	return ret;
}

/* ---- building contexts -------------------------------------------------------------------- */

static sg_err build_ctx(struct sg_tls_server *srv, SSL_CTX **out, char *err, size_t errlen)
{
	if (srv->client)
		return sg_tls_client_ctx_new(&srv->conf, out, err, errlen);
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	if (!ctx) {
		sg_fail(err, errlen, SG_ERR_TLS, "tls: cannot create a server context");
		sg_fail_append_openssl(err, errlen);
		return SG_ERR_TLS;
	}
	sg_err e = sg_tls_apply_profile(ctx, &srv->conf, 1, err, errlen);
	if (e) {
		SSL_CTX_free(ctx);
		return e;
	}
	SSL_CTX_set_app_data(ctx, srv);
	SSL_CTX_set_alpn_select_cb(ctx, alpn_select_cb, srv);
	/* Stateless resumption only: no server-side session cache. */
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	if (srv->tickets) {
		SSL_CTX_clear_options(ctx, SSL_OP_NO_TICKET);
		SSL_CTX_set_num_tickets(ctx, 1);
		SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, ticket_key_cb);
		SSL_CTX_set_timeout(ctx, (long)srv->rotate_s * 2);
	} else {
		SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
		SSL_CTX_set_num_tickets(ctx, 0);
	}
	*out = ctx;
	return SG_OK;
}

sg_err sg_tls_server_new(const struct sg_tls_conf *conf, int alpn_h2, struct sg_tls_server **out,
                         char *err, size_t errlen)
{
	if (!conf || !out)
		return sg_fail(err, errlen, SG_ERR_INVALID, "tls: no configuration");
	*out = NULL;
	sg_err e = sg_tls_conf_check(conf, 1, err, errlen);
	if (e)
		return e;
	struct sg_tls_server *srv = calloc(1, sizeof *srv);
	if (!srv)
		return sg_fail(err, errlen, SG_ERR_NOMEM, "tls: out of memory");
	if (conf_copy(&srv->conf, conf) != 0) {
		free(srv);
		return sg_fail(err, errlen, SG_ERR_NOMEM, "tls: out of memory");
	}
	pthread_mutex_init(&srv->mu, NULL);
	pthread_mutex_init(&srv->tk_mu, NULL);
	srv->alpn_h2 = alpn_h2 ? 1 : 0;
	srv->rotate_s =
	    conf->ticket_rotate_s > 0 ? conf->ticket_rotate_s : SG_TICKET_ROTATE_DEFAULT;
	/* session_tickets: the configuration schema leaves it 0 when absent, so 0 and 1 mean
	 * "on" (the default) and a negative value turns tickets off. PSK endpoints issue no
	 * tickets: the resumed session would not carry the PSK identity the policy needs. */
	srv->tickets = conf->session_tickets >= 0 && conf->mode != SG_TLS_PSK;
	stamp_all(&srv->conf, srv->stamps);
	e = build_ctx(srv, &srv->ctx, err, errlen);
	if (e) {
		sg_tls_server_free(srv);
		return e;
	}
	*out = srv;
	return SG_OK;
}

sg_err sg_tls_server_reload(struct sg_tls_server *srv, char *err, size_t errlen)
{
	if (!srv)
		return sg_fail(err, errlen, SG_ERR_INVALID, "tls: no server");
	struct file_stamp st[F_N];
	stamp_all(&srv->conf, st);
	sg_err e = sg_tls_conf_check(&srv->conf, !srv->client, err, errlen);
	SSL_CTX *nctx = NULL;
	if (!e)
		e = build_ctx(srv, &nctx, err, errlen);
	if (e) {
		sg_log_warn("tls reload failed, keeping the current certificates: %s",
		            err ? err : sg_err_str(e));
		return e;
	}
	pthread_mutex_lock(&srv->mu);
	SSL_CTX *old = srv->ctx;
	srv->ctx = nctx;
	memcpy(srv->stamps, st, sizeof st);
	pthread_mutex_unlock(&srv->mu);
	SSL_CTX_free(old); /* connections made from it hold their own references */
	return SG_OK;
}

sg_err sg_tls_server_reload_if_changed(struct sg_tls_server *srv, char *err, size_t errlen)
{
	if (!srv)
		return sg_fail(err, errlen, SG_ERR_INVALID, "tls: no server");
	struct file_stamp st[F_N];
	stamp_all(&srv->conf, st);
	int changed = 0;
	pthread_mutex_lock(&srv->mu);
	for (int i = 0; i < F_N; i++)
		if (!stamps_equal(&st[i], &srv->stamps[i]))
			changed = 1;
	pthread_mutex_unlock(&srv->mu);
	if (!changed)
		return SG_OK;
	return sg_tls_server_reload(srv, err, errlen);
}

SSL *sg_tls_server_ssl_new(struct sg_tls_server *srv)
{
	if (!srv)
		return NULL;
	pthread_mutex_lock(&srv->mu);
	SSL_CTX *ctx = srv->ctx;
	if (ctx && SSL_CTX_up_ref(ctx) != 1)
		ctx = NULL;
	pthread_mutex_unlock(&srv->mu);
	if (!ctx)
		return NULL;
	SSL *ssl = SSL_new(ctx);
	SSL_CTX_free(ctx);
	return ssl;
}

enum sg_tls_mode sg_tls_server_mode(const struct sg_tls_server *srv)
{
	return srv ? srv->conf.mode : SG_TLS_SERVER_AUTH;
}

void sg_tls_server_free(struct sg_tls_server *srv)
{
	if (!srv)
		return;
	SSL_CTX_free(srv->ctx);
	wipe_key(&srv->cur);
	wipe_key(&srv->prev);
	conf_free(&srv->conf);
	pthread_mutex_destroy(&srv->mu);
	pthread_mutex_destroy(&srv->tk_mu);
	free(srv);
}

/* ---- reloadable client contexts: the same endpoint, built with sg_tls_client_ctx_new ---- */

struct sg_tls_client {
	struct sg_tls_server e; /* first: sg_tls_server_free(&c->e) frees c */
};

sg_err sg_tls_client_new(const struct sg_tls_conf *conf, struct sg_tls_client **out, char *err,
                         size_t errlen)
{
	if (!conf || !out)
		return sg_fail(err, errlen, SG_ERR_INVALID, "tls: no configuration");
	*out = NULL;
	struct sg_tls_client *c = calloc(1, sizeof *c);
	if (!c)
		return sg_fail(err, errlen, SG_ERR_NOMEM, "tls: out of memory");
	if (conf_copy(&c->e.conf, conf) != 0) {
		free(c);
		return sg_fail(err, errlen, SG_ERR_NOMEM, "tls: out of memory");
	}
	pthread_mutex_init(&c->e.mu, NULL);
	pthread_mutex_init(&c->e.tk_mu, NULL);
	c->e.client = 1;
	stamp_all(&c->e.conf, c->e.stamps);
	sg_err e = build_ctx(&c->e, &c->e.ctx, err, errlen);
	if (e) {
		sg_tls_server_free(&c->e);
		return e;
	}
	*out = c;
	return SG_OK;
}

sg_err sg_tls_client_reload_if_changed(struct sg_tls_client *c, char *err, size_t errlen)
{
	return sg_tls_server_reload_if_changed(c ? &c->e : NULL, err, errlen);
}

SSL *sg_tls_client_ssl_new(struct sg_tls_client *c)
{
	return sg_tls_server_ssl_new(c ? &c->e : NULL);
}

void sg_tls_client_free(struct sg_tls_client *c)
{
	sg_tls_server_free(c ? &c->e : NULL);
}
