/* fuzz/fuzz_jws.c: access-token verification (I7, I10, RFC 7515, RFC 8725) as every resource
 * server runs it on a bearer token, and JWK Set parsing as the authorization and SEALDD
 * servers read the issuer's keys. An input starting with '{' is a JWK Set; anything else a
 * compact JWS, verified against a key set holding the fixed key below, under a policy with
 * issuer, audience, scope and a fixed clock.
 *
 * The key is for fuzzing only and public in this repository: it lets the corpus hold tokens
 * whose signature verifies, so that mutations reach the claim checks. A token is accepted only
 * when its header says ES256 and the key's kid, and when claims that pass are passed again by
 * sg_jws_check_claims (the claim half). */
#include "fuzz.h"

#include "auth/jws.h"

#include <string.h>

static const char FUZZ_KEY[] = "-----BEGIN PRIVATE KEY-----\n"
                               "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgwKfs+nTNzNrPGm5i\n"
                               "dE8l/DYGPMXC7iatSO2X+6xy30GhRANCAAQItmw9tGK9lomPWp04RmFifci57UQG\n"
                               "fTN6ZS6J7QQlxuaBzpqLFgPOajKfxNtjYR2xRGrNuZ1H0rLbgbvyv8oh\n"
                               "-----END PRIVATE KEY-----\n";
#define FUZZ_KID "fuzz-key-1"
#define FUZZ_NOW 1900000000 /* 2030-03-17 */

static struct sg_jws_keyset *keyset(void)
{
	static struct sg_jws_keyset *ks;
	if (ks)
		return ks;
	struct sg_jws_key *k = NULL;
	char err[256];
	FUZZ_CHECK(sg_jws_key_from_pem(FUZZ_KEY, sizeof FUZZ_KEY - 1, FUZZ_KID, &k, err,
	                               sizeof err) == SG_OK);
	ks = sg_jws_keyset_new();
	FUZZ_CHECK(ks && sg_jws_keyset_add(ks, k) == SG_OK);
	sg_jws_key_free(k);
	return ks;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[256];
	if (size && data[0] == '{') {
		struct sg_jws_keyset *ks = NULL;
		if (sg_jws_keyset_parse((const char *)data, size, &ks, err, sizeof err) == SG_OK) {
			FUZZ_CHECK(ks != NULL);
			json_t *jwks = sg_jws_keyset_to_jwks(ks);
			FUZZ_CHECK(jwks && json_array_size(json_object_get(jwks, "keys")) ==
			                       sg_jws_keyset_count(ks));
			json_decref(jwks);
			sg_jws_keyset_free(ks);
		}
		return 0;
	}
	if (memchr(data, 0, size)) /* a header value never holds NUL (RFC 9110 §5.5) */
		return 0;
	char *tok = malloc(size + 1);
	FUZZ_CHECK(tok != NULL);
	memcpy(tok, data, size);
	tok[size] = '\0';
	struct sg_jws_policy pol = {.iss = "https://sealguard.fuzz",
	                            .aud = "sealguard:sdd",
	                            .scope = "sdd",
	                            .typ = "at+jwt",
	                            .leeway = 5,
	                            .now = FUZZ_NOW};
	json_t *claims = NULL;
	sg_jws_status st = sg_jws_verify(keyset(), tok, &pol, &claims, err, sizeof err);
	FUZZ_CHECK(strlen(sg_jws_status_str(st)) > 0);
	FUZZ_CHECK(st != SG_JWS_INTERNAL); /* no input is a library failure */
	if (st == SG_JWS_OK) {
		FUZZ_CHECK(json_is_object(claims));
		FUZZ_CHECK(sg_jws_check_claims(claims, &pol, err, sizeof err) == SG_JWS_OK);
		json_decref(claims);
	} else {
		FUZZ_CHECK(claims == NULL);
	}
	free(tok);
	return 0;
}
