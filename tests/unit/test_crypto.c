/*
 * test_crypto.c - unit tests for chunker/crypto.c (and the bits of chunker/util.c
 * it leans on): key file create/open and its failure modes, sub-key
 * derivation checked against an independent HKDF, keyed IDs, AEAD.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include "check.h"
#include "crypto.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#define KF_HDR_LEN 60
#define KF_LEN (KF_HDR_LEN + 64 + SEAL_OVERHEAD)

static char tmpdir[] = "/tmp/tresor-test-crypto-XXXXXX";

/* Declare a path buffer named var for name inside the test directory. */
#define TPATH(var, name)						\
	char var[256];							\
	snprintf(var, sizeof(var), "%s/%s", tmpdir, name)

static int keys_equal(const struct store_keys *a, const struct store_keys *b)
{
	return !memcmp(a, b, sizeof(*a));
}

static int is_zero(const void *p, size_t n)
{
	const uint8_t *b = p;

	for (size_t i = 0; i < n; i++)
		if (b[i])
			return 0;
	return 1;
}

static void overwrite(const char *path, const uint8_t *buf, size_t len)
{
	int fd = open(path, O_WRONLY | O_TRUNC);

	CHECK(fd >= 0);
	CHECK_EQ(pwrite_full(fd, buf, len, 0), 0);
	close(fd);
}

static void test_util(void)
{
	uint8_t in[5] = { 0x00, 0x01, 0xab, 0xcd, 0xff }, out[5];
	char hex[11];
	uint8_t *buf;
	size_t len;
	struct stat st;
	TPATH(p, "atomic");
	TPATH(missing, "missing");

	hex_encode(in, 5, hex);
	CHECK(!strcmp(hex, "0001abcdff"));
	CHECK_EQ(hex_decode("0001ABCDff", out, 5), 0);
	CHECK(!memcmp(in, out, 5));
	memset(out, 0x55, sizeof(out));
	CHECK_EQ(hex_decode("0001abcdfg", out, 5), -EINVAL);
	CHECK_EQ(hex_decode("0001", out, 5), -EINVAL);	/* too short */
	CHECK_EQ(out[0], 0x55);				/* untouched */
	/* a hex prefix of a longer name */
	CHECK_EQ(hex_decode("0001abcdff.pack", out, 5), 0);

	{
		uint8_t b[8];

		put_le64(b, 0x0102030405060708ull);
		CHECK_EQ(b[0], 8);
		CHECK_EQ(b[7], 1);
		CHECK(get_le64(b) == 0x0102030405060708ull);
	}

	CHECK_EQ(write_file_atomic(p, "hello", 5, 0640), 0);
	CHECK_EQ(write_file_atomic(p, "hello world", 11, 0640), 0);
	CHECK_EQ(stat(p, &st), 0);
	CHECK_EQ(st.st_mode & 07777, 0640);
	CHECK_EQ(read_file(p, &buf, &len), 0);
	CHECK_EQ(len, 11);
	CHECK(!memcmp(buf, "hello world", 12));	/* NUL-terminated */
	free(buf);
	CHECK_EQ(read_file(missing, &buf, &len), -ENOENT);
	CHECK_EQ(read_file(tmpdir, &buf, &len), -EINVAL);

	{
		int fd = open(p, O_RDONLY);
		char b[16];

		CHECK_EQ(pread_full(fd, b, 5, 6), 0);
		CHECK(!memcmp(b, "world", 5));
		CHECK_EQ(pread_full(fd, b, 6, 6), -EIO);	/* past EOF */
		close(fd);
	}
	CHECK_EQ(fsync_parent_dir(p), 0);
	CHECK_EQ(fsync_parent_dir("relative-name"), 0);
	unlink(p);

	{
		uint8_t secret[32];

		memset(secret, 0xaa, sizeof(secret));
		secure_wipe(secret, sizeof(secret));
		CHECK(is_zero(secret, sizeof(secret)));
	}
	{
		/* tlog: format, threshold, errno kept */
		TPATH(lp, "log");
		int fd = open(lp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		int saved = dup(2);

		fflush(stderr);
		dup2(fd, 2);
		close(fd);
		unsetenv("TRESOR_LOG");
		errno = EAGAIN;
		tlog(LOG_DEBUG, "hidden %d", 1);
		tlog(LOG_WARN, "shown %d\n", 2);
		CHECK_EQ(errno, EAGAIN);
		log_set_level(LOG_DEBUG);
		tlog(LOG_DEBUG, "now %s", "shown");
		log_set_level(LOG_ERR);
		tlog(LOG_WARN, "hidden again");
		log_set_level(LOG_INFO);
		fflush(stderr);
		dup2(saved, 2);
		close(saved);
		CHECK_EQ(read_file(lp, &buf, &len), 0);
		CHECK(!strcmp((char *)buf, "tresor: warn: shown 2\n"
			      "tresor: debug: now shown\n"));
		free(buf);
		unlink(lp);
	}
	{
		uint64_t a = now_ns(), b;

		usleep(2000);
		b = now_ns();
		CHECK(b > a + 1000000);
	}
}

/*
 * Unwrap the key file by hand from its documented layout and derive the
 * sub-keys with a hand-written HKDF (RFC 5869 on top of HMAC), so the
 * format description and the code cannot drift apart unnoticed.
 */
static void check_against_format(const char *path, const char *pass,
				 const struct store_keys *keys)
{
	static const char *const info[] = { "tresor enc v1", "tresor id v1",
		"tresor gear v1", "tresor meta v1", "tresor name v1" };
	const uint8_t *want[] = { keys->enc, keys->id, keys->gear, keys->meta,
				  keys->name };
	uint8_t *buf, wrap[32], master[64], prk[32], t[32];
	uint8_t zeros[32] = { 0 };
	unsigned int l;
	size_t len;

	CHECK_EQ(read_file(path, &buf, &len), 0);
	CHECK_EQ(len, KF_LEN);
	CHECK(!memcmp(buf, "TRESORKY", 8));
	CHECK_EQ(get_le32(buf + 8), 1);
	CHECK_EQ(get_le32(buf + 12), 1);
	CHECK_EQ(EVP_PBE_scrypt(pass, strlen(pass), buf + 28, 32,
				1ull << get_le32(buf + 16), get_le32(buf + 20),
				get_le32(buf + 24), 1ull << 30, wrap, 32), 1);
	CHECK_EQ(aead_open(wrap, buf, KF_HDR_LEN, buf + KF_HDR_LEN,
			   64 + SEAL_OVERHEAD, master), 0);
	/* HKDF-Extract with no salt = HMAC(32 zero bytes, master). */
	HMAC(EVP_sha256(), zeros, 32, master, 64, prk, &l);
	for (int i = 0; i < 5; i++) {
		uint8_t msg[64];
		size_t n = strlen(info[i]);

		memcpy(msg, info[i], n);
		msg[n] = 1;	/* T(1) = HMAC(PRK, info || 0x01) */
		HMAC(EVP_sha256(), prk, 32, msg, n + 1, t, &l);
		CHECK(!memcmp(t, want[i], 32));
	}
	free(buf);
}

static void test_keyfile(void)
{
	struct kdf_params kp = { 10, 8, 1 };
	struct store_keys k1, k2;
	TPATH(p, "key");
	TPATH(nokey, "nokey");
	uint8_t *orig, *now, *mod;
	size_t olen, nlen;
	struct stat st;
	int ret;

	CHECK_EQ(keyfile_create(p, "secret pass", 11, &kp, &k1), 0);
	CHECK_EQ(stat(p, &st), 0);
	CHECK_EQ(st.st_mode & 07777, 0600);
	CHECK_EQ(st.st_size, KF_LEN);

	/* roundtrip */
	memset(&k2, 0, sizeof(k2));
	CHECK_EQ(keyfile_open(p, "secret pass", 11, &k2), 0);
	CHECK(keys_equal(&k1, &k2));
	check_against_format(p, "secret pass", &k1);

	/* every sub-key differs from the others and is not zero */
	{
		const uint8_t *s[] = { k1.enc, k1.id, k1.gear, k1.meta,
				       k1.name };

		for (int i = 0; i < 5; i++) {
			CHECK(!is_zero(s[i], KEY_LEN));
			for (int j = i + 1; j < 5; j++)
				CHECK(memcmp(s[i], s[j], KEY_LEN));
		}
	}

	/* never overwrites */
	CHECK_EQ(keyfile_create(p, "other", 5, &kp, &k2), -EEXIST);

	/* wrong passphrase: rejected, file untouched, keys wiped */
	CHECK_EQ(read_file(p, &orig, &olen), 0);
	memset(&k2, 0x77, sizeof(k2));
	CHECK_EQ(keyfile_open(p, "secret pasS", 11, &k2), -EKEYREJECTED);
	CHECK_EQ(keyfile_open(p, "secret pass", 10, &k2), -EKEYREJECTED);
	CHECK_EQ(keyfile_open(p, "", 0, &k2), -EKEYREJECTED);
	CHECK_EQ(read_file(p, &now, &nlen), 0);
	CHECK_EQ(nlen, olen);
	CHECK(!memcmp(orig, now, olen));
	free(now);

	/* a flipped bit anywhere makes the file unusable */
	mod = malloc(olen);
	for (size_t i = 0; i < olen; i++) {
		memcpy(mod, orig, olen);
		mod[i] ^= 0x01;
		overwrite(p, mod, olen);
		ret = keyfile_open(p, "secret pass", 11, &k2);
		if (ret >= 0)
			fprintf(stderr, "flipped byte %zu accepted\n", i);
		CHECK(ret < 0);
		/* the header itself is checked before any scrypt work */
		if (i < 8)
			CHECK_EQ(ret, -EBADMSG);
		else if (i >= 28)
			CHECK_EQ(ret, -EKEYREJECTED);
	}

	/* newer version */
	memcpy(mod, orig, olen);
	put_le32(mod + 8, 2);
	overwrite(p, mod, olen);
	CHECK_EQ(keyfile_open(p, "secret pass", 11, &k2), -EPROTONOSUPPORT);
	put_le32(mod + 8, 0);
	overwrite(p, mod, olen);
	CHECK_EQ(keyfile_open(p, "secret pass", 11, &k2), -EBADMSG);
	/* out-of-range work factor: refused without trying */
	memcpy(mod, orig, olen);
	put_le32(mod + 16, 40);
	overwrite(p, mod, olen);
	CHECK_EQ(keyfile_open(p, "secret pass", 11, &k2), -EBADMSG);

	/* truncated, extended, empty */
	overwrite(p, orig, olen - 1);
	CHECK_EQ(keyfile_open(p, "secret pass", 11, &k2), -EBADMSG);
	memcpy(mod, orig, olen);
	overwrite(p, mod, olen);
	{
		int fd = open(p, O_WRONLY | O_APPEND);

		CHECK_EQ(write(fd, "x", 1), 1);
		close(fd);
	}
	CHECK_EQ(keyfile_open(p, "secret pass", 11, &k2), -EBADMSG);
	overwrite(p, orig, 0);
	CHECK_EQ(keyfile_open(p, "secret pass", 11, &k2), -EBADMSG);

	/* and the restored original still opens */
	overwrite(p, orig, olen);
	CHECK_EQ(keyfile_open(p, "secret pass", 11, &k2), 0);
	CHECK(keys_equal(&k1, &k2));
	CHECK_EQ(keyfile_open(nokey, "x", 1, &k2), -ENOENT);
	free(mod);
	free(orig);
	unlink(p);

	/* parameter checks, and nothing is created on refusal */
	{
		struct kdf_params bad[] = {
			{ 9, 8, 1 }, { 23, 8, 1 }, { 10, 0, 1 },
			{ 10, 8, 0 }, { 22, 16, 1 },
		};

		for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
			CHECK_EQ(keyfile_create(p, "x", 1, &bad[i], &k2),
				 -EINVAL);
			CHECK_EQ(access(p, F_OK), -1);
		}
	}

	/* two stores with the same passphrase get unrelated keys */
	CHECK_EQ(keyfile_create(p, "secret pass", 11, &kp, &k2), 0);
	CHECK(memcmp(k1.enc, k2.enc, KEY_LEN));
	CHECK(memcmp(k1.id, k2.id, KEY_LEN));
	unlink(p);
}

static void test_ids(void)
{
	struct store_keys k;
	uint8_t a[CHUNK_ID_LEN], b[CHUNK_ID_LEN], ref[32];
	char hex[65], refhex[65];
	unsigned int l;

	CHECK_EQ(random_bytes(&k, sizeof(k)), 0);
	chunk_id_compute(&k, "abc", 3, a);
	chunk_id_compute(&k, "abc", 3, b);
	CHECK(!memcmp(a, b, sizeof(a)));
	HMAC(EVP_sha256(), k.id, KEY_LEN, (const uint8_t *)"abc", 3, ref, &l);
	CHECK(!memcmp(a, ref, 32));
	chunk_id_compute(&k, "abd", 3, b);
	CHECK(memcmp(a, b, sizeof(a)));
	chunk_id_compute(&k, "", 0, b);
	CHECK(memcmp(a, b, sizeof(a)));

	/* the ID depends on the key: another store, another ID */
	k.id[0] ^= 1;
	chunk_id_compute(&k, "abc", 3, b);
	CHECK(memcmp(a, b, sizeof(a)));

	name_hmac_hex(&k, "label", 5, hex);
	CHECK_EQ(strlen(hex), 64);
	HMAC(EVP_sha256(), k.name, KEY_LEN, (const uint8_t *)"label", 5, ref,
	     &l);
	hex_encode(ref, 32, refhex);
	CHECK(!strcmp(hex, refhex));
	/* name and id keys are separate */
	chunk_id_compute(&k, "label", 5, a);
	hex_encode(a, 32, refhex);
	CHECK(strcmp(hex, refhex));
}

/* Decrypt nonce||ct||tag with plain EVP calls: checks the layout. */
static int evp_open(const uint8_t *key, const uint8_t *aad, int aadlen,
		    const uint8_t *in, int inlen, uint8_t *out)
{
	EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
	int l, ok, ctlen = inlen - SEAL_OVERHEAD;

	ok = EVP_DecryptInit_ex(c, EVP_aes_256_gcm(), NULL, key, in) == 1 &&
	     EVP_DecryptUpdate(c, NULL, &l, aad, aadlen) == 1 &&
	     EVP_DecryptUpdate(c, out, &l, in + 12, ctlen) == 1 &&
	     EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, 16,
				 (void *)(in + 12 + ctlen)) == 1 &&
	     EVP_DecryptFinal_ex(c, out + l, &l) == 1;
	EVP_CIPHER_CTX_free(c);
	return ok;
}

static void test_aead(void)
{
	static const size_t lens[] = { 0, 1, 15, 16, 17, 100, 4096, 65537 };
	uint8_t key[KEY_LEN], key2[KEY_LEN];
	const uint8_t aad[] = "some aad";
	uint8_t *pt, *sealed, *sealed2, *out;
	size_t maxlen = 65537;

	CHECK_EQ(random_bytes(key, sizeof(key)), 0);
	memcpy(key2, key, sizeof(key));
	key2[31] ^= 0x80;
	pt = malloc(maxlen);
	sealed = malloc(maxlen + SEAL_OVERHEAD);
	sealed2 = malloc(maxlen + SEAL_OVERHEAD);
	out = malloc(maxlen + SEAL_OVERHEAD);
	CHECK_EQ(random_bytes(pt, maxlen), 0);

	for (size_t li = 0; li < sizeof(lens) / sizeof(lens[0]); li++) {
		size_t n = lens[li], sl = n + SEAL_OVERHEAD;

		CHECK_EQ(aead_seal(key, aad, sizeof(aad), pt, n, sealed), 0);
		CHECK_EQ(aead_open(key, aad, sizeof(aad), sealed, sl, out), 0);
		CHECK(!n || !memcmp(out, pt, n));
		if (n)
			CHECK(memcmp(sealed + 12, pt, n)); /* encrypted */
		CHECK(evp_open(key, aad, sizeof(aad), sealed, (int)sl, out));
		CHECK(!n || !memcmp(out, pt, n));
		/* fresh nonce every time */
		CHECK_EQ(aead_seal(key, aad, sizeof(aad), pt, n, sealed2), 0);
		CHECK(memcmp(sealed, sealed2, 12));

		CHECK_EQ(aead_open(key2, aad, sizeof(aad), sealed, sl, out),
			 -EBADMSG);
		CHECK_EQ(aead_open(key, aad, sizeof(aad) - 1, sealed, sl, out),
			 -EBADMSG);
		CHECK_EQ(aead_open(key, NULL, 0, sealed, sl, out), -EBADMSG);
		CHECK_EQ(aead_open(key, aad, sizeof(aad), sealed, sl - 1, out),
			 -EBADMSG);
	}

	/* every single flipped byte (nonce, ciphertext, tag) is caught,
	 * and a failed open leaves no plaintext behind */
	{
		size_t n = 100, sl = n + SEAL_OVERHEAD;
		uint8_t a2[sizeof(aad)];

		CHECK_EQ(aead_seal(key, aad, sizeof(aad), pt, n, sealed), 0);
		for (size_t i = 0; i < sl; i++) {
			sealed[i] ^= 0x40;
			memset(out, 0x11, n);
			CHECK_EQ(aead_open(key, aad, sizeof(aad), sealed, sl,
					   out), -EBADMSG);
			CHECK(is_zero(out, n));
			sealed[i] ^= 0x40;
		}
		for (size_t i = 0; i < sizeof(aad); i++) {
			memcpy(a2, aad, sizeof(aad));
			a2[i] ^= 0x01;
			CHECK_EQ(aead_open(key, a2, sizeof(a2), sealed, sl,
					   out), -EBADMSG);
		}
		CHECK_EQ(aead_open(key, aad, sizeof(aad), sealed, sl, out), 0);
		CHECK_EQ(aead_open(key, aad, sizeof(aad), sealed, 27, out),
			 -EBADMSG);
	}

	/* in place both ways: pt at out + nonce, out at in + nonce */
	{
		size_t n = 4096;

		memcpy(sealed + SEAL_NONCE_LEN, pt, n);
		CHECK_EQ(aead_seal(key, NULL, 0, sealed + SEAL_NONCE_LEN, n,
				   sealed), 0);
		CHECK(memcmp(sealed + SEAL_NONCE_LEN, pt, n));
		CHECK_EQ(aead_open(key, NULL, 0, sealed, n + SEAL_OVERHEAD,
				   out), 0);
		CHECK(!memcmp(out, pt, n));
		CHECK_EQ(aead_open(key, NULL, 0, sealed, n + SEAL_OVERHEAD,
				   sealed + SEAL_NONCE_LEN), 0);
		CHECK(!memcmp(sealed + SEAL_NONCE_LEN, pt, n));
	}
	free(pt);
	free(sealed);
	free(sealed2);
	free(out);
}

int main(void)
{
	if (!mkdtemp(tmpdir)) {
		perror("mkdtemp");
		return 1;
	}
	test_util();
	test_keyfile();
	test_ids();
	test_aead();
	{
		/* how long one default-strength unlock takes here */
		struct store_keys k;
		struct kdf_params kp = { KDF_LOG2N_DEFAULT, 8, 1 };
		uint64_t t0 = now_ns();
		TPATH(slow, "slow");

		CHECK_EQ(keyfile_create(slow, "p", 1, &kp, &k), 0);
		printf("keyfile_create at log2n=%u: %.0f ms\n", kp.log2n,
		       (now_ns() - t0) / 1e6);
		unlink(slow);
	}
	rmdir(tmpdir);
	printf("test_crypto: %s\n", check_failures ? "FAILED" : "ok");
	return CHECK_DONE();
}
