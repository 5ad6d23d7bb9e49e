/* bench/km_micro.c: the in-process part of bench/km.sh. One thread, the SKM-S's own functions
 * (km/logic.h) on the record a KM-UU retrieval releases: the JWE to an SKM-C key (R2: ECDH-ES
 * with an ephemeral P-256 key + Concat KDF + A256GCM, cjose), and sealing / unsealing the key
 * bytes at rest (AES-256-GCM under the master key, AAD = record id + version).
 * Prints: jwe_us=.. seal_us=.. unseal_us=.. (microseconds per operation, CPU of one core).
 * build (bench/km.sh does it): cc -O2 -Isrc bench/km_micro.c BUILD/libsealguard_core.a LIBS */
#include "base/err.h"
#include "client/skmc.h"
#include "km/logic.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	int n = argc > 1 ? atoi(argv[1]) : 2000;
	char *priv = NULL;
	if (n < 1 || sg_skmc_key_generate(&priv) != SG_OK)
		return 1;
	json_t *pub = sg_skmc_key_public(priv);
	char *jwk = pub ? json_dumps(pub, JSON_COMPACT) : NULL;
	json_decref(pub);
	if (!jwk)
		return 1;
	unsigned char key[32], mk[SG_KEY_LEN], sealed[SG_SEALED_LEN(32)], out[32];
	memset(key, 7, sizeof key);
	memset(mk, 9, sizeof mk);
	/* the plaintext of one released record, as km/server.c builds it */
	json_t *rec = sg_km_record_json("v2x", "alice-k1", 1, "user", "alice@v2x", 1700000000000LL,
	                                1800000000000LL, key, sizeof key);
	char *pt = rec ? json_dumps(rec, JSON_COMPACT) : NULL;
	json_decref(rec);
	if (!pt)
		return 1;
	char err[200];
	double t0 = now();
	for (int i = 0; i < n; i++) {
		char *c = NULL;
		if (sg_km_jwe_encrypt(jwk, pt, strlen(pt), &c, err, sizeof err) != SG_OK) {
			fprintf(stderr, "jwe: %s\n", err);
			return 1;
		}
		free(c);
	}
	double jwe = (now() - t0) / n * 1e6;
	int m = n * 50;
	t0 = now();
	for (int i = 0; i < m; i++)
		if (sg_km_seal(mk, "v2x", "alice-k1", i, key, sizeof key, sealed) != SG_OK)
			return 1;
	double seal = (now() - t0) / m * 1e6;
	sg_km_seal(mk, "v2x", "alice-k1", 1, key, sizeof key, sealed);
	t0 = now();
	for (int i = 0; i < m; i++) {
		size_t ol = 0;
		if (sg_km_unseal(mk, "v2x", "alice-k1", 1, sealed, sizeof sealed, out, &ol) !=
		    SG_OK)
			return 1;
	}
	double unseal = (now() - t0) / m * 1e6;
	printf("jwe_us=%.1f seal_us=%.2f unseal_us=%.2f plaintext_bytes=%zu\n", jwe, seal, unseal,
	       strlen(pt));
	free(pt);
	free(jwk);
	sg_skmc_secret_free(priv);
	return 0;
}
