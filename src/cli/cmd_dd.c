/* cli/cmd_dd.c: `sealguard dd`: the SEALDD client (client/sddc.h) from the command line -
 * open, send, recv and close SEALDD-UU flows with the logged-in user's access token - and
 * `dd echo-server`, a minimal VAL server endpoint (SEALDD-S user plane, mutual TLS) that echoes
 * what it receives, for demos and tests (TS 23.433; docs/sdd-protocol.md). */
#include "cli/cli.h"

#include "base/clock.h"
#include "base/file.h"
#include "client/sddc.h"
#include "conf/conf.h"
#include "http/client.h"
#include "store/store.h"
#include "tls/tls.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <jansson.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <event2/util.h>

static const char USAGE[] =
    "usage: sealguard dd open --service VAL_SERVICE_ID [common options]\n"
    "       sealguard dd send --flow ID [--in FILE] [--echo] [--out FILE] [common options]\n"
    "       sealguard dd recv --flow ID [--out FILE] [--bytes N] [--timeout-ms MS]\n"
    "                        [--no-follow] [common]\n"
    "       sealguard dd close --flow ID [common options]\n"
    "       sealguard dd echo-server --bind HOST:PORT [--cert F --key F --cacert F]\n"
    "                        [--timeout-ms MS]\n"
    "       sealguard dd relocate --flow ID --to https://HOST:PORT [--via URL]\n"
    "       sealguard [--state-dir DIR] dd transmissions\n"
    "\n"
    "The SEALDD client (TS 23.433; TS 33.434 Rel-18): `open` establishes a flow for a VAL\n"
    "service over SEALDD-UU (the VAL server must have requested transmission for it) and\n"
    "prints it as JSON; `send` attaches to the flow on the data endpoint (TLS 1.3, the token\n"
    "in the first frame; two redundant channels for URLLC) and sends FILE (default stdin);\n"
    "with --echo it reads back as many bytes, checks that their SHA-256 equals what was sent\n"
    "and prints the throughput (the echoed bytes go to --out when given); `recv` writes what\n"
    "arrives on the flow to --out (default stdout) until N bytes or MS without data (bytes\n"
    "that arrived past N are dropped with the session: the SEALDD server sent them); when\n"
    "the flow is relocated to another SEALDD server (END \"FLOW_RELOCATED: HOST:PORT\"), it\n"
    "attaches there with the same flow id and token and goes on (at most 4 times; not with\n"
    "--no-follow, which stops with the new endpoint in the error); `close` releases the flow.\n"
    "\n"
    "common options:\n"
    "  --url URL            SEALDD-UU (default: https://localhost:PORT of the configuration's\n"
    "                       bearer reference point serving sdd)\n"
    "  --cacert F           trust anchors (default STATE/pki/ca.crt)\n"
    "  --crl F              CRLs checked for the SEALDD server's certificate chain (default\n"
    "                       STATE/pki/crl.pem when it exists and --cacert is not given;\n"
    "                       \"\" checks none)\n"
    "  --token-cache F      the `sealguard login` token cache (default as login's)\n"
    "  --token-file F       or a file holding just the access token (aud sealguard:sdd)\n"
    "  --timeout-ms MS      per operation (default 10000)\n"
    "\n"
    "echo-server: a VAL server endpoint that accepts mutual TLS (client certificate verified\n"
    "against --cacert and --crl, re-read when they change) and echoes; runs until\n"
    "SIGTERM/SIGINT. Defaults: --cert/--key the state dir's server certificate, --cacert\n"
    "STATE/pki/ca.crt, --crl as above. A connection must finish its\n"
    "handshake within --timeout-ms, and take each echo (up to 64 KiB) within six times that,\n"
    "or it is closed; at most 256 connections at once.\n"
    "\n"
    "transmissions: the SEALDD-S transmissions the state dir's store holds (one per VAL\n"
    "service, kept across restarts), and whether the registry still lets each authorize\n"
    "flows: `inactive` once its VAL server is removed, disabled, no longer registered for the\n"
    "VAL service or registered with another identity.\n"
    "\n"
    "relocate (operator, SEALDD-E): asks the running SEALDD server of this configuration\n"
    "(its SEAL-E, --via, default https://localhost:PORT of the mtls reference point serving\n"
    "sdd, with the server's own certificate resource.client_cert) to push flow ID's DD\n"
    "context to the target SEALDD server's SEAL-E (TS 29.548 sdd-ddc/v1), whose certificate\n"
    "identity must be in sdd.peers. On success the flow ends here with END\n"
    "\"FLOW_RELOCATED: HOST:PORT\" (the target's data endpoint) and the result is printed.\n";

enum {
	O_SERVICE = 1,
	O_FLOW,
	O_IN,
	O_OUT,
	O_ECHO,
	O_BYTES,
	O_TIMEOUT,
	O_URL,
	O_CACERT,
	O_CRL,
	O_CACHE,
	O_TOKFILE,
	O_BIND,
	O_CERT,
	O_KEY,
	O_TO,
	O_VIA,
	O_NO_FOLLOW,
	O_HELP
};

struct dd_args {
	const char *service, *flow, *in, *out, *url, *cacert, *crl, *cache, *tokfile, *bind, *cert,
	    *key;
	const char *to, *via; /* relocate */
	int echo, no_follow;
	long long bytes;
	long timeout_ms;
};

static int parse(int argc, char **argv, struct dd_args *a)
{
	static const struct option opts[] = {
	    {"service", required_argument, NULL, O_SERVICE},
	    {"flow", required_argument, NULL, O_FLOW},
	    {"in", required_argument, NULL, O_IN},
	    {"out", required_argument, NULL, O_OUT},
	    {"echo", no_argument, NULL, O_ECHO},
	    {"bytes", required_argument, NULL, O_BYTES},
	    {"timeout-ms", required_argument, NULL, O_TIMEOUT},
	    {"url", required_argument, NULL, O_URL},
	    {"cacert", required_argument, NULL, O_CACERT},
	    {"crl", required_argument, NULL, O_CRL},
	    {"token-cache", required_argument, NULL, O_CACHE},
	    {"token-file", required_argument, NULL, O_TOKFILE},
	    {"bind", required_argument, NULL, O_BIND},
	    {"cert", required_argument, NULL, O_CERT},
	    {"key", required_argument, NULL, O_KEY},
	    {"to", required_argument, NULL, O_TO},
	    {"via", required_argument, NULL, O_VIA},
	    {"no-follow", no_argument, NULL, O_NO_FOLLOW},
	    {"help", no_argument, NULL, O_HELP},
	    {0, 0, 0, 0},
	};
	memset(a, 0, sizeof *a);
	a->timeout_ms = 10000;
	a->bytes = -1;
	optind = 1;
	int o;
	char *end;
	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (o) {
		case O_SERVICE:
			a->service = optarg;
			break;
		case O_FLOW:
			a->flow = optarg;
			break;
		case O_IN:
			a->in = optarg;
			break;
		case O_OUT:
			a->out = optarg;
			break;
		case O_ECHO:
			a->echo = 1;
			break;
		case O_NO_FOLLOW:
			a->no_follow = 1;
			break;
		case O_BYTES:
			a->bytes = strtoll(optarg, &end, 10);
			if (*end || a->bytes < 0)
				return fprintf(stderr, "sealguard: --bytes takes a number\n"), 2;
			break;
		case O_TIMEOUT:
			a->timeout_ms = strtol(optarg, &end, 10);
			if (*end || a->timeout_ms <= 0)
				return fprintf(stderr, "sealguard: --timeout-ms takes a number\n"),
				       2;
			break;
		case O_URL:
			a->url = optarg;
			break;
		case O_CACERT:
			a->cacert = optarg;
			break;
		case O_CRL:
			a->crl = optarg;
			break;
		case O_CACHE:
			a->cache = optarg;
			break;
		case O_TOKFILE:
			a->tokfile = optarg;
			break;
		case O_BIND:
			a->bind = optarg;
			break;
		case O_CERT:
			a->cert = optarg;
			break;
		case O_KEY:
			a->key = optarg;
			break;
		case O_TO:
			a->to = optarg;
			break;
		case O_VIA:
			a->via = optarg;
			break;
		case O_HELP:
			fputs(USAGE, stdout);
			return -1;
		default:
			fputs(USAGE, stderr);
			return 2;
		}
	}
	if (optind != argc) {
		fputs(USAGE, stderr);
		return 2;
	}
	return 0;
}

/* ---- common: URL, CA, token ---- */

struct dd_ctx {
	struct sg_conf *conf;
	char url[512], ca[4096], crl[4096];
	char *token;
	struct sg_sddc_conf sc;
};

static void ctx_free(struct dd_ctx *x)
{
	if (x->token) {
		OPENSSL_cleanse(x->token, strlen(x->token));
		free(x->token);
	}
	sg_conf_free(x->conf);
}

static char *read_token(const struct dd_args *a)
{
	char path[4096];
	if (a->tokfile) {
		snprintf(path, sizeof path, "%s", a->tokfile);
	} else if (a->cache) {
		snprintf(path, sizeof path, "%s", a->cache);
	} else {
		const char *xdg = getenv("XDG_STATE_HOME"), *home = getenv("HOME");
		if (xdg && xdg[0] == '/')
			snprintf(path, sizeof path, "%s/sealguard/tokens.json", xdg);
		else if (home && *home)
			snprintf(path, sizeof path, "%s/.local/state/sealguard/tokens.json", home);
		else
			return sg_cli_fail("give --token-cache or --token-file"), NULL;
	}
	FILE *f = fopen(path, "r");
	if (!f)
		return sg_cli_fail("%s: %s (log in first: sealguard login)", path, strerror(errno)),
		       NULL;
	char buf[16384];
	size_t n = fread(buf, 1, sizeof buf - 1, f);
	fclose(f);
	buf[n] = '\0';
	char *tok = NULL;
	if (a->tokfile) {
		while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' '))
			buf[--n] = '\0';
		tok = n ? strdup(buf) : NULL;
	} else {
		json_t *j = json_loads(buf, 0, NULL);
		const char *t = json_string_value(json_object_get(j, "access_token"));
		tok = t ? strdup(t) : NULL;
		json_decref(j);
	}
	OPENSSL_cleanse(buf, sizeof buf);
	if (!tok)
		sg_cli_fail("%s holds no access token", path);
	return tok;
}

static int ctx_open(const struct sg_cli_global *g, const struct dd_args *a, struct dd_ctx *x)
{
	memset(x, 0, sizeof *x);
	if (sg_cli_load_conf(g, NULL, &x->conf))
		return 1;
	if (a->url) {
		snprintf(x->url, sizeof x->url, "%s", a->url);
	} else {
		for (unsigned i = 0; i < x->conf->n_refpoints && !x->url[0]; i++) {
			const struct sg_conf_refpoint *r = &x->conf->refpoints[i];
			int sdd = 0;
			for (unsigned k = 0; k < r->n_services; k++)
				sdd |= !strcmp(r->services[k], "sdd");
			const char *port = strrchr(r->bind, ':');
			if (sdd && r->auth_mode == SG_AUTH_BEARER && port)
				snprintf(x->url, sizeof x->url, "https://localhost:%s", port + 1);
		}
		if (!x->url[0])
			return sg_cli_fail(
			    "no SEALDD-UU reference point in the configuration: give --url");
	}
	if (a->cacert)
		snprintf(x->ca, sizeof x->ca, "%s", a->cacert);
	else if (sg_path_join(x->ca, sizeof x->ca, x->conf->pki_dir, "ca.crt") != SG_OK)
		return sg_cli_fail("path too long");
	sg_cli_crl(x->conf, a->crl, a->cacert, x->crl, sizeof x->crl); /* T5 */
	if (!(x->token = read_token(a)))
		return 1;
	x->sc = (struct sg_sddc_conf){.url = x->url,
	                              .ca = x->ca,
	                              .crl = x->crl[0] ? x->crl : NULL,
	                              .token = x->token,
	                              .timeout_ms = a->timeout_ms};
	return 0;
}

/* ---- open, close ---- */

static void print_flow(const struct sg_sddc_flow *f)
{
	json_t *j = json_pack("{s:s, s:s, s:s, s:s, s:I, s:I}", "sddFlowId", f->id, "valServiceId",
	                      f->val_service_id, "transType", f->trans_type, "host", f->host,
	                      "port", (json_int_t)f->port, "lifetime", (json_int_t)f->lifetime_s);
	char *t = j ? json_dumps(j, JSON_COMPACT) : NULL;
	if (t)
		puts(t);
	free(t);
	json_decref(j);
}

static int dd_open(const struct sg_cli_global *g, const struct dd_args *a)
{
	if (!a->service)
		return sg_cli_fail("dd open needs --service"), 2;
	struct dd_ctx x;
	int rc = ctx_open(g, a, &x);
	if (!rc) {
		struct sg_sddc_flow f;
		char err[512];
		if (sg_sddc_flow_open(&x.sc, a->service, &f, err, sizeof err) != SG_OK)
			rc = sg_cli_fail("flow not established: %s", err);
		else
			print_flow(&f);
	}
	ctx_free(&x);
	return rc;
}

static int dd_close(const struct sg_cli_global *g, const struct dd_args *a)
{
	if (!a->flow)
		return sg_cli_fail("dd close needs --flow"), 2;
	struct dd_ctx x;
	int rc = ctx_open(g, a, &x);
	char err[512];
	if (!rc && sg_sddc_flow_release(&x.sc, a->flow, err, sizeof err) != SG_OK)
		rc = sg_cli_fail("flow not released: %s", err);
	ctx_free(&x);
	return rc;
}

/* ---- send, recv ---- */

/* Connects nchan data channels to host:port and attaches them to flow. */
static int attach_at(struct dd_ctx *x, const char *host, unsigned port, unsigned nchan,
                     const char *flow, unsigned flags, struct sg_sddc **out)
{
	char err[512];
	if (sg_sddc_connect(&x->sc, host, port, nchan, out, err, sizeof err) != SG_OK)
		return sg_cli_fail("data channel: %s", err);
	if (sg_sddc_attach(*out, flow, flags, err, sizeof err) != SG_OK) {
		sg_sddc_close(*out);
		*out = NULL;
		return sg_cli_fail("attach: %s", err);
	}
	return 0;
}

/* Looks the flow up over SEALDD-UU and attaches to it; *nchan (may be NULL): its channels. */
static int attach(struct dd_ctx *x, const char *flow, unsigned flags, struct sg_sddc **out,
                  unsigned *nchan)
{
	struct sg_sddc_flow f;
	char err[512];
	if (sg_sddc_flow_get(&x->sc, flow, &f, err, sizeof err) != SG_OK)
		return sg_cli_fail("flow %s: %s", flow, err);
	unsigned n = strcmp(f.trans_type, "urllc") == 0 ? 2 : 1;
	if (nchan)
		*nchan = n;
	return attach_at(x, f.host, f.port, n, flow, flags, out);
}

static void hex(const unsigned char *d, size_t n, char *out)
{
	for (size_t i = 0; i < n; i++)
		sprintf(out + 2 * i, "%02x", d[i]);
}

#define DD_SEND_STEP (256u << 10) /* dd send --echo: bytes sent between takes of the echo */

static int dd_send(const struct sg_cli_global *g, const struct dd_args *a)
{
	if (!a->flow)
		return sg_cli_fail("dd send needs --flow"), 2;
	FILE *in = a->in && strcmp(a->in, "-") ? fopen(a->in, "rb") : stdin;
	if (!in)
		return sg_cli_fail("%s: %s", a->in, strerror(errno));
	/* the whole input first: --echo compares hashes, and a file is what tests send */
	size_t cap = 1 << 20, len = 0;
	unsigned char *data = malloc(cap);
	for (size_t n; data && (n = fread(data + len, 1, cap - len, in)) > 0;) {
		len += n;
		if (len == cap) {
			unsigned char *d = realloc(data, cap *= 2);
			if (!d)
				free(data);
			data = d;
		}
	}
	int rerr = ferror(in) ? errno : 0;
	if (in != stdin)
		fclose(in);
	if (!data)
		return sg_cli_fail("out of memory");
	if (rerr) {
		free(data);
		return sg_cli_fail("%s: %s", a->in ? a->in : "stdin", strerror(rerr));
	}
	struct dd_ctx x;
	struct sg_sddc *s = NULL;
	int rc = ctx_open(g, a, &x);
	if (!rc)
		rc = attach(&x, a->flow, a->echo ? 0 : SG_SDDC_SEND_ONLY, &s, NULL);
	char err[512];
	int64_t t0 = sg_mono_us();
	size_t taken = 0;
	if (!rc && !a->echo &&
	    sg_sddc_send_ex(s, a->flow, data, len, &taken, err, sizeof err) != SG_OK)
		rc = sg_cli_fail("send: %s (%zu of %zu bytes handed over)", err, taken, len);
	if (!rc && a->echo) {
		FILE *out = a->out ? fopen(a->out, "wb") : NULL;
		if (a->out && !out)
			rc = sg_cli_fail("%s: %s", a->out, strerror(errno));
		EVP_MD_CTX *md = EVP_MD_CTX_new();
		EVP_DigestInit_ex(md, EVP_sha256(), NULL);
		unsigned char buf[65536];
		/* the echo is taken while sending: the client holds back what the application does
		 * not take (sg_sddc_conf.rx_queue_max), so a send of more than that which reads
		 * only at the end would wait for itself */
		size_t sent = 0, got = 0;
		while (!rc && got < len) {
			if (sent < len) {
				size_t k = len - sent < DD_SEND_STEP ? len - sent : DD_SEND_STEP;
				if (sg_sddc_send(s, a->flow, data + sent, k, err, sizeof err) !=
				    SG_OK) {
					rc = sg_cli_fail("send: %s", err);
					break;
				}
				sent += k;
			}
			for (;;) { /* what came back; waiting only when all was sent */
				size_t n = 0;
				size_t want = len - got < sizeof buf ? len - got : sizeof buf;
				sg_err e = sg_sddc_recv(s, a->flow, buf, want,
				                        sent < len ? 0 : a->timeout_ms, &n, err,
				                        sizeof err);
				if (e == SG_ERR_TIMEOUT && sent < len)
					break;
				if (e != SG_OK) {
					rc = sg_cli_fail("echo: %s after %zu of %zu bytes", err,
					                 got, len);
					break;
				}
				EVP_DigestUpdate(md, buf, n);
				if (out && fwrite(buf, 1, n, out) != n) {
					rc = sg_cli_fail("%s: %s", a->out, strerror(errno));
					break;
				}
				if ((got += n) == len || sent == len)
					break;
			}
		}
		int64_t us = sg_mono_us() - t0;
		unsigned char h1[32], h2[32];
		EVP_DigestFinal_ex(md, h2, NULL);
		EVP_MD_CTX_free(md);
		EVP_Digest(data, len, h1, NULL, EVP_sha256(), NULL);
		if (out && fclose(out) != 0 && !rc)
			rc = sg_cli_fail("%s: %s", a->out, strerror(errno));
		if (!rc) {
			char hx[65];
			hex(h1, 32, hx);
			if (memcmp(h1, h2, 32) != 0) {
				rc = sg_cli_fail("echo: SHA-256 differs from what was sent");
			} else {
				double mbs = us > 0 ? (double)len * 2 / (double)us : 0;
				printf("sent %zu bytes and got them back through SEALDD: sha256 %s "
				       "verified; %.1f ms, %.1f MB/s (both directions)\n",
				       len, hx, (double)us / 1000.0, mbs);
			}
		}
	}
	sg_sddc_close(s);
	ctx_free(&x);
	free(data);
	return rc;
}

static int dd_recv(const struct sg_cli_global *g, const struct dd_args *a)
{
	if (!a->flow)
		return sg_cli_fail("dd recv needs --flow"), 2;
	struct dd_ctx x;
	struct sg_sddc *s = NULL;
	unsigned nchan = 1, follows = 0;
	int rc = ctx_open(g, a, &x);
	if (!rc)
		rc = attach(&x, a->flow, 0, &s, &nchan);
	/* opened (truncated) once the flow is attached: a refused attach leaves the file alone */
	FILE *out = rc || !a->out || !strcmp(a->out, "-") ? stdout : fopen(a->out, "wb");
	if (!out)
		rc = sg_cli_fail("%s: %s", a->out, strerror(errno));
	unsigned char buf[65536];
	long long got = 0;
	char err[512], host[256];
	unsigned port;
	while (!rc && (a->bytes < 0 || got < a->bytes)) {
		size_t n = 0, want = sizeof buf;
		if (a->bytes >= 0 && (long long)want > a->bytes - got)
			want = (size_t)(a->bytes - got);
		sg_err e = sg_sddc_recv(s, a->flow, buf, want, a->timeout_ms, &n, err, sizeof err);
		if (e == SG_ERR_TIMEOUT && a->bytes < 0)
			break; /* until MS without data */
		if (e != SG_OK && !a->no_follow && follows < 4 &&
		    sg_sddc_relocated_to(err, host, sizeof host, &port)) {
			/* SEALDD-E (docs/sdd-protocol.md §7): the flow lives on at the target with
			 * the same id; the endpoint came from the source over its authenticated
			 * channel, and the target's certificate is verified against its host */
			sg_sddc_close(s);
			s = NULL;
			follows++;
			x.sc.server_name = host; /* the target's name, not the source's */
			rc = attach_at(&x, host, port, nchan, a->flow, 0, &s);
			if (!rc)
				fprintf(stderr,
				        "recv: %s after %lld bytes; attached at %s:%u, going on\n",
				        err, got, host, port);
			continue;
		}
		if (e != SG_OK) {
			rc = sg_cli_fail("recv: %s after %lld bytes", err, got);
			break;
		}
		if (fwrite(buf, 1, n, out) != n) {
			rc = sg_cli_fail("%s: %s", out == stdout ? "stdout" : a->out,
			                 strerror(errno));
			break;
		}
		got += (long long)n;
	}
	/* what did not reach the file (full disk, EIO) is an error, not a short success */
	if (out && (out != stdout ? fclose(out) : fflush(stdout)) != 0 && !rc)
		rc = sg_cli_fail("%s: %s", out == stdout ? "stdout" : a->out, strerror(errno));
	sg_sddc_close(s);
	ctx_free(&x);
	return rc;
}

/* ---- echo-server ---- */

static volatile sig_atomic_t echo_stop;
static void on_sig(int sig)
{
	(void)sig;
	echo_stop = 1;
}

struct echo_conn {
	SSL *ssl;
	int fd;
};

/* Live connections of the echo server, so that it can close them and free its TLS endpoint
 * before exiting (no thread outlives the endpoint). */
static pthread_mutex_t echo_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t echo_idle = PTHREAD_COND_INITIALIZER;
static int echo_fds[256];
static unsigned echo_live;

static long echo_timeout_ms; /* --timeout-ms: the handshake deadline; writes: 6 times that */

/* After a non-blocking SSL call returned r <= 0: waits for what it wants until deadline
 * (sg_mono_ms; 0: none). 1 to call again, 0 when the connection is done (closed, failed, or
 * the deadline passed). */
static int echo_wait(struct echo_conn *c, int r, int64_t deadline)
{
	int e = SSL_get_error(c->ssl, r);
	if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
		return 0;
	struct pollfd pfd = {.fd = c->fd, .events = e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT};
	int64_t left = deadline ? deadline - sg_mono_ms() : -1;
	if (deadline && left <= 0)
		return 0;
	int n;
	while ((n = poll(&pfd, 1, left > INT_MAX ? INT_MAX : (int)left)) < 0 && errno == EINTR)
		;
	return n > 0;
}

static void *echo_thread(void *arg)
{
	struct echo_conn *c = arg;
	/* A connection cannot hold its slot and thread past the handshake deadline, for the
	 * whole handshake (no certificate is needed for that: a peer that trickles its
	 * ClientHello a byte at a time cannot stretch it), nor one that takes the echo of what it
	 * sent slower than 64 KiB per write deadline (6 x --timeout-ms, for the whole of each
	 * echo: a reader that trickles its window open cannot stretch it); an authenticated
	 * connection may then idle as long as its flow does. */
	int hs = fcntl(c->fd, F_SETFL, O_NONBLOCK) == 0 ? -1 : 0;
	for (int64_t deadline = sg_mono_ms() + echo_timeout_ms; hs < 0;) {
		int r = SSL_accept(c->ssl);
		hs = r == 1 ? 1 : echo_wait(c, r, deadline) ? -1 : 0;
	}
	if (hs == 1) {
		struct sg_tls_principal p;
		if (sg_tls_principal_from_ssl(c->ssl, &p) == SG_OK) {
			fprintf(stderr, "echo-server: connection from %s (%s)\n",
			        p.nsans ? p.sans[0] : "?", p.version);
			sg_tls_principal_clear(&p);
		}
		char buf[65536];
		for (int ok = 1; ok;) {
			int n = SSL_read(c->ssl, buf, sizeof buf);
			if (n <= 0) {
				ok = echo_wait(c, n, 0);
				continue;
			}
			int64_t deadline = sg_mono_ms() + echo_timeout_ms * 6;
			for (int off = 0; ok && off < n;) {
				int w = SSL_write(c->ssl, buf + off, n - off);
				if (w > 0)
					off += w;
				else
					ok = echo_wait(c, w, deadline);
			}
		}
		SSL_shutdown(c->ssl);
	}
	SSL_free(c->ssl);
	pthread_mutex_lock(&echo_lock);
	for (unsigned i = 0; i < echo_live; i++)
		if (echo_fds[i] == c->fd) {
			echo_fds[i] = echo_fds[--echo_live];
			break;
		}
	close(c->fd);
	pthread_cond_signal(&echo_idle);
	pthread_mutex_unlock(&echo_lock);
	free(c);
	return NULL;
}

static int dd_echo(const struct sg_cli_global *g, const struct dd_args *a)
{
	if (!a->bind)
		return sg_cli_fail("dd echo-server needs --bind"), 2;
	echo_timeout_ms = a->timeout_ms > 24L * 3600 * 1000 ? 24L * 3600 * 1000 : a->timeout_ms;
	struct sg_conf *conf = NULL;
	if (sg_cli_load_conf(g, NULL, &conf))
		return 1;
	char cert[4096], key[4096], ca[4096], crl[4096], err[512];
	snprintf(cert, sizeof cert, "%s", a->cert ? a->cert : "");
	snprintf(key, sizeof key, "%s", a->key ? a->key : "");
	snprintf(ca, sizeof ca, "%s", a->cacert ? a->cacert : "");
	if ((!a->cert && sg_path_join(cert, sizeof cert, conf->pki_dir, "server.crt")) ||
	    (!a->key && sg_path_join(key, sizeof key, conf->pki_dir, "server.key")) ||
	    (!a->cacert && sg_path_join(ca, sizeof ca, conf->pki_dir, "ca.crt"))) {
		sg_conf_free(conf);
		return sg_cli_fail("path too long");
	}
	sg_cli_crl(conf, a->crl, a->cacert, crl, sizeof crl);
	sg_conf_free(conf);
	/* SEALDD-S user plane (R3): mutual TLS with the profile; the SEALDD server's certificate
	 * checked against the CRL too (T5) */
	struct sg_tls_conf tc = {
	    .mode = SG_TLS_MUTUAL, .cert = cert, .key = key, .ca = ca, .crl = crl[0] ? crl : NULL};
	struct sg_tls_server *ts = NULL;
	if (sg_tls_server_new(&tc, 0, &ts, err, sizeof err) != SG_OK)
		return sg_cli_fail("echo-server TLS: %s", err);
	struct sockaddr_storage ss;
	int sl = sizeof ss;
	if (evutil_parse_sockaddr_port(a->bind, (struct sockaddr *)&ss, &sl) != 0) {
		sg_tls_server_free(ts);
		return sg_cli_fail("--bind '%s': expected host:port", a->bind), 2;
	}
	int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0), one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (fd < 0 || bind(fd, (struct sockaddr *)&ss, (socklen_t)sl) != 0 ||
	    listen(fd, SOMAXCONN) != 0) {
		int e = errno;
		if (fd >= 0)
			close(fd);
		sg_tls_server_free(ts);
		return sg_cli_fail("--bind %s: %s", a->bind, strerror(e));
	}
	struct sigaction sa = {.sa_handler = on_sig};
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	fprintf(stderr, "echo-server: listening on %s (mutual TLS)\n", a->bind);
	/* SIGTERM and SIGINT are taken only while waiting for a connection (ppoll), so one that
	 * comes between the check of echo_stop and the wait is not lost until the next
	 * connection; the connection threads inherit the mask and never take them */
	sigset_t stopsigs, waitmask;
	sigemptyset(&stopsigs);
	sigaddset(&stopsigs, SIGTERM);
	sigaddset(&stopsigs, SIGINT);
	pthread_sigmask(SIG_BLOCK, &stopsigs, &waitmask);
	sigdelset(&waitmask, SIGTERM);
	sigdelset(&waitmask, SIGINT);
	int rc = 0;
	while (!echo_stop) {
		struct pollfd lp = {.fd = fd, .events = POLLIN};
		if (ppoll(&lp, 1, NULL, &waitmask) < 0)
			continue; /* EINTR: echo_stop is looked at again */
		int c = accept4(fd, NULL, NULL, SOCK_CLOEXEC);
		if (c < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				continue; /* the connection went away before it was taken */
			/* out of descriptors or memory: wait for connections to end; a connection
			 * that failed before it was taken (ECONNABORTED, EPROTO, ...): the next */
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
			    errno == ENOMEM)
				usleep(100000);
			else if (errno == EBADF || errno == EINVAL || errno == ENOTSOCK ||
			         errno == EOPNOTSUPP || errno == EFAULT) {
				rc = sg_cli_fail("echo-server: accept: %s", strerror(errno));
				break;
			}
			continue;
		}
		sg_tls_server_reload_if_changed(ts, err, sizeof err); /* a renewed CRL (logged) */
		struct echo_conn *ec = calloc(1, sizeof *ec);
		SSL *ssl = ec ? sg_tls_server_ssl_new(ts) : NULL;
		pthread_t th;
		if (!ssl) {
			free(ec);
			close(c);
			continue;
		}
		SSL_set_fd(ssl, c);
		ec->ssl = ssl;
		ec->fd = c;
		setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
		pthread_mutex_lock(&echo_lock);
		int room = echo_live < sizeof echo_fds / sizeof echo_fds[0];
		if (room)
			echo_fds[echo_live++] = c;
		pthread_mutex_unlock(&echo_lock);
		if (!room || pthread_create(&th, NULL, echo_thread, ec) != 0) {
			pthread_mutex_lock(&echo_lock);
			for (unsigned i = 0; room && i < echo_live; i++)
				if (echo_fds[i] == c) {
					echo_fds[i] = echo_fds[--echo_live];
					break;
				}
			pthread_mutex_unlock(&echo_lock);
			SSL_free(ssl);
			close(c);
			free(ec);
			continue;
		}
		pthread_detach(th);
	}
	close(fd);
	/* wake every connection thread, wait for them, then free the TLS endpoint they use */
	pthread_mutex_lock(&echo_lock);
	for (unsigned i = 0; i < echo_live; i++)
		shutdown(echo_fds[i], SHUT_RDWR);
	while (echo_live > 0)
		pthread_cond_wait(&echo_idle, &echo_lock);
	pthread_mutex_unlock(&echo_lock);
	sg_tls_server_free(ts);
	return rc;
}

/* Whether the registry still lets stored transmission t authorize flows (the SEALDD server's
 * check at every flow, D2): "active" or why not. */
static const char *trans_status(struct sg_store *st, const struct sg_store_sdd_trans *t)
{
	struct sg_store_valserver v = {0};
	sg_err e = sg_store_valserver_get(st, t->client_id, &v);
	if (e == SG_ERR_NOTFOUND)
		return "inactive: VAL server removed";
	if (e != SG_OK)
		return "unknown: the registry cannot be read";
	const char *why = "active";
	int serves = 0;
	for (size_t i = 0; i < v.n_val_services; i++)
		serves |= strcmp(v.val_services[i], t->val_service) == 0;
	if (v.disabled)
		why = "inactive: VAL server disabled";
	else if (!serves)
		why = "inactive: VAL server not registered for the VAL service";
	else if (!v.identity || strcmp(v.identity, t->identity) != 0)
		why = "inactive: VAL server registered with another identity";
	sg_store_valserver_clear(&v);
	return why;
}

/* `dd transmissions`: the stored TS 29.548 transmissions, one line each. */
static int dd_transmissions(const struct sg_cli_global *g)
{
	struct sg_conf *conf = NULL;
	struct sg_store *st = NULL;
	if (sg_cli_open_store(g, &conf, &st))
		return 1;
	struct sg_store_sdd_trans *v = NULL;
	size_t n = 0;
	int rc = 0;
	if (sg_store_sdd_trans_list(st, &v, &n) != SG_OK) {
		rc = sg_cli_fail("transmissions: %s", sg_store_last_error());
	} else {
		printf("%-16s %-7s %-16s %-24s %-20s %s\n", "VAL SERVICE", "TYPE", "VAL SERVER",
		       "VAL SERVER ENDPOINT", "REQUESTED", "STATUS");
	}
	for (size_t i = 0; i < n; i++) {
		json_t *b = json_loads(v[i].body, 0, NULL);
		const json_t *ci = json_object_get(b, "valServerConnInfo");
		const char *host = json_string_value(json_object_get(ci, "ipv4Addr"));
		if (!host)
			host = json_string_value(json_object_get(ci, "ipv6Addr"));
		if (!host)
			host = json_string_value(json_object_get(ci, "uri"));
		char ep[300], when[40];
		json_int_t port = json_integer_value(json_object_get(ci, "port"));
		if (port)
			snprintf(ep, sizeof ep, "%s:%lld", host ? host : "?", (long long)port);
		else
			snprintf(ep, sizeof ep, "%s", host ? host : "?");
		sg_time_iso8601(when, sizeof when, v[i].updated_at);
		printf("%-16s %-7s %-16s %-24s %-20s %s\n", v[i].val_service, v[i].trans_type,
		       v[i].client_id, ep, when, trans_status(st, &v[i]));
		json_decref(b);
	}
	sg_store_sdd_trans_list_free(v, n);
	sg_store_close(st);
	sg_conf_free(conf);
	return rc;
}

/* ---- relocate (SEALDD-E, docs/sdd-protocol.md §7) ---- */

/* The operator's request goes to this configuration's running SEALDD server over its SEAL-E
 * (mutual TLS with the server's own certificate, which only the operator of the state
 * directory holds); the server pushes the context to the target and answers with the result. */
static int dd_relocate(const struct sg_cli_global *g, const struct dd_args *a)
{
	if (!a->flow || !a->to)
		return sg_cli_fail("dd relocate needs --flow and --to"), 2;
	struct sg_conf *conf = NULL;
	if (sg_cli_load_conf(g, NULL, &conf))
		return 1;
	char url[600] = "";
	if (a->via) {
		snprintf(url, sizeof url, "%s", a->via);
	} else {
		for (unsigned i = 0; i < conf->n_refpoints && !url[0]; i++) {
			const struct sg_conf_refpoint *r = &conf->refpoints[i];
			int sdd = 0;
			for (unsigned k = 0; k < r->n_services; k++)
				sdd |= !strcmp(r->services[k], "sdd");
			const char *port = strrchr(r->bind, ':');
			if (sdd && r->auth_mode == SG_AUTH_MTLS && port)
				snprintf(url, sizeof url, "https://localhost:%s", port + 1);
		}
	}
	if (!url[0]) {
		sg_conf_free(conf);
		return sg_cli_fail(
		    "no SEAL-E reference point serving sdd in the configuration: give "
		    "--via");
	}
	size_t ul = strlen(url);
	while (ul && url[ul - 1] == '/')
		url[--ul] = '\0';
	snprintf(url + ul, sizeof url - ul, "/sg-sdd-ops/v1/relocations");
	struct sg_http_client_conf hc = {
	    .tls = {.mode = SG_TLS_MUTUAL,
	            .cert = conf->resource.client_cert,
	            .key = conf->resource.client_key,
	            .ca = a->cacert ? a->cacert : conf->resource.ca,
	            .crl = a->cacert ? NULL : conf->resource.crl},
	    .connect_timeout_ms = 3000,
	    .timeout_ms = a->timeout_ms + 15000,
	    .max_response_bytes = 64 * 1024,
	};
	char err[512];
	struct sg_http_client *cl = NULL;
	json_t *req = json_pack("{s:s, s:s}", "sddFlowId", a->flow, "target", a->to);
	char *body = req ? json_dumps(req, JSON_COMPACT) : NULL;
	json_decref(req);
	struct sg_http_response resp = {0};
	static const char *const H[] = {"Content-Type: application/json", NULL};
	int rc = 0;
	if (!body) {
		rc = sg_cli_fail("out of memory");
	} else if (sg_http_client_new(&hc, &cl, err, sizeof err) != SG_OK ||
	           sg_http_client_request(cl, "POST", url, H, body, strlen(body), &resp, err,
	                                  sizeof err) != SG_OK) {
		rc = sg_cli_fail("relocate: %s", err);
	} else {
		json_t *j = json_loadb((const char *)resp.body.data, resp.body.len, 0, NULL);
		if (resp.status == 200) {
			char *t = j ? json_dumps(j, JSON_COMPACT) : NULL;
			if (t)
				puts(t);
			free(t);
		} else {
			const char *cause = json_string_value(json_object_get(j, "cause"));
			const char *detail = json_string_value(json_object_get(j, "detail"));
			rc = sg_cli_fail("flow not relocated: %ld %s: %s", resp.status,
			                 cause ? cause : "", detail ? detail : "");
		}
		json_decref(j);
	}
	sg_http_response_free(&resp);
	sg_http_client_free(cl);
	free(body);
	sg_conf_free(conf);
	return rc;
}

int sg_cli_dd(int argc, char **argv, const struct sg_cli_global *g)
{
	if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
		fputs(USAGE, argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	const char *sub = argv[1];
	struct dd_args a;
	int rc = parse(argc - 1, argv + 1, &a);
	if (rc)
		return rc < 0 ? 0 : rc;
	if (!strcmp(sub, "open"))
		return dd_open(g, &a);
	if (!strcmp(sub, "send"))
		return dd_send(g, &a);
	if (!strcmp(sub, "recv"))
		return dd_recv(g, &a);
	if (!strcmp(sub, "close"))
		return dd_close(g, &a);
	if (!strcmp(sub, "echo-server"))
		return dd_echo(g, &a);
	if (!strcmp(sub, "relocate"))
		return dd_relocate(g, &a);
	if (!strcmp(sub, "transmissions")) {
		if (argc > 2)
			return sg_cli_fail("dd transmissions takes no options ('%s')", argv[2]), 2;
		return dd_transmissions(g);
	}
	fputs(USAGE, stderr);
	return 2;
}
