/*
 * crypto.c - the key file, sub-key derivation, keyed IDs and AEAD.
 *
 * Owns the store's cryptography (other OpenSSL uses are plain digests:
 * socket names, S3 request hashes, restore's cache names, the metadata
 * chain's hash links).  Byte layouts are in docs/FORMAT.md ("Key file").
 * Secrets (passphrase-derived key, master key) only live in local buffers
 * that are wiped before returning.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include "crypto.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/kdf.h>
#include <openssl/rand.h>

#define KF_MAGIC "TRESORKY"
#define KF_MAGIC_LEN 8
#define KF_VERSION 1
#define KF_KDF_SCRYPT 1
#define KF_SALT_LEN 32
#define KF_MASTER_LEN 64
/* magic, version, kdf, log2n, r, p, salt */
#define KF_HDR_LEN (KF_MAGIC_LEN + 5 * 4 + KF_SALT_LEN)
#define KF_LEN (KF_HDR_LEN + KF_MASTER_LEN + SEAL_OVERHEAD)

/* Limits on the scrypt parameters, for creating and for trusting a file
 * we are about to spend memory on: scrypt needs 128 * r * N bytes, which
 * must stay within 4 GiB (log2n = 22 with r = 8). */
#define KDF_LOG2N_MIN 10
#define KDF_LOG2N_MAX 22
#define KDF_R_MAX 32
#define KDF_P_MAX 16
#define KDF_MEM_MAX (UINT64_C(1) << 32)

/* EVP lengths are ints; feed big buffers in pieces. */
#define EVP_PIECE (1u << 30)

static const char *const subkey_info[] = {
	"tresor enc v1",
	"tresor id v1",
	"tresor gear v1",
	"tresor meta v1",
	"tresor name v1",
};

static int kdf_params_ok(uint32_t log2n, uint32_t r, uint32_t p)
{
	if (log2n < KDF_LOG2N_MIN || log2n > KDF_LOG2N_MAX)
		return 0;
	if (r < 1 || r > KDF_R_MAX || p < 1 || p > KDF_P_MAX)
		return 0;
	return (UINT64_C(128) * r << log2n) <= KDF_MEM_MAX;
}

/*
 * scrypt(pass, salt) -> 32-byte wrapping key.  maxmem is what OpenSSL's
 * scrypt will ask for (128*r*(N+2) for V plus 128*r*p for B) plus slack,
 * computed rather than fixed so every accepted parameter set works.
 */
static int derive_wrap_key(const char *pass, size_t passlen,
			   const uint8_t salt[KF_SALT_LEN], uint32_t log2n,
			   uint32_t r, uint32_t p, uint8_t key[KEY_LEN])
{
	uint64_t n = UINT64_C(1) << log2n;
	uint64_t maxmem = UINT64_C(128) * r * (n + 2 + p) + (UINT64_C(1) << 20);

	if (!EVP_PBE_scrypt(pass ? pass : "", pass ? passlen : 0, salt,
			    KF_SALT_LEN, n, r, p, maxmem, key, KEY_LEN)) {
		ERR_clear_error();
		return -ENOMEM;	/* the only realistic failure */
	}
	return 0;
}

/*
 * HKDF-SHA-256(master, salt = none, info) for each purpose.  A fresh
 * EVP_KDF_CTX per sub-key, so no info from an earlier derivation can
 * carry over (OpenSSL concatenates repeated info parameters).
 */
static int derive_subkeys(const uint8_t master[KF_MASTER_LEN],
			  struct store_keys *keys)
{
	uint8_t *out[] = { keys->enc, keys->id, keys->gear, keys->meta,
			   keys->name };
	char digest[] = "SHA256";
	EVP_KDF *kdf;
	int ret = 0;

	kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
	if (!kdf)
		return -EIO;
	for (size_t i = 0; i < sizeof(out) / sizeof(out[0]) && !ret; i++) {
		EVP_KDF_CTX *kctx = EVP_KDF_CTX_new(kdf);
		OSSL_PARAM params[] = {
			OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST,
							 digest, 0),
			OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY,
							  (void *)master,
							  KF_MASTER_LEN),
			OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO,
				(void *)subkey_info[i], strlen(subkey_info[i])),
			OSSL_PARAM_construct_end(),
		};

		if (!kctx || EVP_KDF_derive(kctx, out[i], KEY_LEN, params) != 1)
			ret = -EIO;
		EVP_KDF_CTX_free(kctx);	/* clears its copy of the key */
	}
	EVP_KDF_free(kdf);
	if (ret) {
		ERR_clear_error();
		secure_wipe(keys, sizeof(*keys));
	}
	return ret;
}

static void kf_put_header(uint8_t *h, uint32_t log2n, uint32_t r,
			  uint32_t p, const uint8_t salt[KF_SALT_LEN])
{
	memcpy(h, KF_MAGIC, KF_MAGIC_LEN);
	put_le32(h + 8, KF_VERSION);
	put_le32(h + 12, KF_KDF_SCRYPT);
	put_le32(h + 16, log2n);
	put_le32(h + 20, r);
	put_le32(h + 24, p);
	memcpy(h + 28, salt, KF_SALT_LEN);
}

/*
 * kp == NULL means the defaults.  The slow scrypt runs before the file is
 * created so a crash or interrupt during it leaves no empty key file
 * behind to block a retry with -EEXIST.  The file is written once with
 * O_EXCL; if writing fails we remove it (it is ours: O_EXCL).
 */
int keyfile_create(const char *path, const char *pass, size_t passlen,
		   const struct kdf_params *kp, struct store_keys *keys)
{
	struct kdf_params def = { KDF_LOG2N_DEFAULT, 8, 1 };
	uint8_t buf[KF_LEN];
	uint8_t master[KF_MASTER_LEN];
	uint8_t wrap[KEY_LEN];
	uint8_t salt[KF_SALT_LEN];
	int fd, ret;

	if (!kp)
		kp = &def;
	if (!kdf_params_ok(kp->log2n, kp->r, kp->p))
		return -EINVAL;

	ret = random_bytes(salt, sizeof(salt));
	if (!ret)
		ret = random_bytes(master, sizeof(master));
	if (!ret)
		ret = derive_wrap_key(pass, passlen, salt, kp->log2n, kp->r,
				      kp->p, wrap);
	if (ret)
		goto out;
	kf_put_header(buf, kp->log2n, kp->r, kp->p, salt);
	ret = aead_seal(wrap, buf, KF_HDR_LEN, master, KF_MASTER_LEN,
			buf + KF_HDR_LEN);
	if (!ret)
		ret = derive_subkeys(master, keys);
	if (ret)
		goto out;

	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0) {
		ret = -errno;
		goto out;
	}
	/* umask may only have narrowed 0600, but be exact. */
	ret = fchmod(fd, 0600) ? -errno : 0;
	if (!ret)
		ret = pwrite_full(fd, buf, sizeof(buf), 0);
	if (!ret && fsync(fd))
		ret = -errno;
	if (close(fd) && !ret)
		ret = -errno;
	if (ret)
		unlink(path);
	else
		ret = fsync_parent_dir(path);
out:
	secure_wipe(master, sizeof(master));
	secure_wipe(wrap, sizeof(wrap));
	if (ret)
		secure_wipe(keys, sizeof(*keys));
	return ret;
}

/*
 * Checks run cheapest first: magic, version, size and parameter ranges
 * before any scrypt work, so a foreign or hostile file cannot make us
 * allocate gigabytes.  A failed unseal is reported as a wrong passphrase;
 * a damaged salt or sealed key looks exactly the same and cannot be told
 * apart.
 */
/* The master key of the key file at path, unwrapped with the passphrase
 * (and the file's KDF parameters in *kp); errors as keyfile_open's. */
static int kf_unwrap(const char *path, const char *pass, size_t passlen,
		     uint8_t master[KF_MASTER_LEN], struct kdf_params *kp)
{
	uint8_t wrap[KEY_LEN];
	uint8_t *buf;
	size_t len;
	uint32_t version, log2n, r, p;
	int ret;

	ret = read_file(path, &buf, &len);
	if (ret)
		return ret;
	if (len < 12 || memcmp(buf, KF_MAGIC, KF_MAGIC_LEN)) {
		ret = -EBADMSG;
		goto out;
	}
	version = get_le32(buf + 8);
	if (version > KF_VERSION) {
		ret = -EPROTONOSUPPORT;
		goto out;
	}
	log2n = len >= KF_HDR_LEN ? get_le32(buf + 16) : 0;
	r = len >= KF_HDR_LEN ? get_le32(buf + 20) : 0;
	p = len >= KF_HDR_LEN ? get_le32(buf + 24) : 0;
	if (version != KF_VERSION || len != KF_LEN ||
	    get_le32(buf + 12) != KF_KDF_SCRYPT ||
	    !kdf_params_ok(log2n, r, p)) {
		ret = -EBADMSG;
		goto out;
	}
	ret = derive_wrap_key(pass, passlen, buf + 28, log2n, r, p, wrap);
	if (ret)
		goto out;
	if (aead_open(wrap, buf, KF_HDR_LEN, buf + KF_HDR_LEN,
		      KF_MASTER_LEN + SEAL_OVERHEAD, master)) {
		ret = -EKEYREJECTED;
		goto out;
	}
	if (kp) {
		kp->log2n = log2n;
		kp->r = r;
		kp->p = p;
	}
out:
	if (ret)
		secure_wipe(master, KF_MASTER_LEN);
	secure_wipe(wrap, sizeof(wrap));
	free(buf);
	return ret;
}

int keyfile_open(const char *path, const char *pass, size_t passlen,
		 struct store_keys *keys)
{
	uint8_t master[KF_MASTER_LEN];
	int ret = kf_unwrap(path, pass, passlen, master, NULL);

	if (!ret)
		ret = derive_subkeys(master, keys);
	secure_wipe(master, sizeof(master));
	return ret;
}

/*
 * The same master key, wrapped anew: a fresh salt, scrypt(newpass), the
 * file replaced atomically (a crash leaves the old file or the new one,
 * never neither).  Everything encrypted so far stays as it is.
 */
int keyfile_rewrap(const char *path, const char *oldpass, size_t oldlen,
		   const char *newpass, size_t newlen, const struct kdf_params *kp)
{
	uint8_t master[KF_MASTER_LEN];
	uint8_t wrap[KEY_LEN];
	uint8_t salt[KF_SALT_LEN];
	uint8_t buf[KF_LEN];
	struct kdf_params have;
	int ret;

	ret = kf_unwrap(path, oldpass, oldlen, master, &have);
	if (ret)
		return ret;
	if (!kp)
		kp = &have;
	if (!kdf_params_ok(kp->log2n, kp->r, kp->p)) {
		ret = -EINVAL;
		goto out;
	}
	ret = random_bytes(salt, sizeof(salt));
	if (!ret)
		ret = derive_wrap_key(newpass, newlen, salt, kp->log2n, kp->r, kp->p, wrap);
	if (ret)
		goto out;
	kf_put_header(buf, kp->log2n, kp->r, kp->p, salt);
	ret = aead_seal(wrap, buf, KF_HDR_LEN, master, KF_MASTER_LEN, buf + KF_HDR_LEN);
	if (!ret)
		ret = write_file_atomic(path, buf, sizeof(buf), 0600);
out:
	secure_wipe(master, sizeof(master));
	secure_wipe(wrap, sizeof(wrap));
	return ret;
}

/*
 * HMAC() with an explicit out length check.  The API is void because an
 * ID cannot be "maybe computed": a wrong ID would silently merge distinct
 * chunks, so an OpenSSL failure (allocation) is fatal.
 */
static void hmac_sha256(const uint8_t key[KEY_LEN], const void *data,
			size_t len, uint8_t out[32])
{
	unsigned int olen = 0;

	if (!HMAC(EVP_sha256(), key, KEY_LEN, data, len, out, &olen) ||
	    olen != 32) {
		tlog(LOG_ERR, "HMAC-SHA-256 failed; cannot continue");
		abort();
	}
}

/* One-shot HMAC: its per-call setup is microseconds, noise next to
 * hashing a chunk of hundreds of KiB. */
void chunk_id_compute(const struct store_keys *keys, const void *data,
		      size_t len, uint8_t out[CHUNK_ID_LEN])
{
	hmac_sha256(keys->id, data, len, out);
}

void name_hmac_hex(const struct store_keys *keys, const void *data,
		   size_t len, char out[65])
{
	uint8_t mac[32];

	hmac_sha256(keys->name, data, len, mac);
	hex_encode(mac, sizeof(mac), out);
}

/* Run one EVP update over a buffer of any size; out may be NULL for AAD. */
static int gcm_update(EVP_CIPHER_CTX *ctx, int enc, uint8_t *out,
		      const uint8_t *in, size_t len)
{
	while (len) {
		int piece = len > EVP_PIECE ? (int)EVP_PIECE : (int)len;
		int outl;
		int ok = enc ? EVP_EncryptUpdate(ctx, out, &outl, in, piece)
			     : EVP_DecryptUpdate(ctx, out, &outl, in, piece);

		if (!ok || (out && outl != piece))
			return -1;
		in += piece;
		if (out)
			out += piece;
		len -= (size_t)piece;
	}
	return 0;
}

/*
 * A fresh nonce from RAND_bytes per message: keys are long-lived and
 * shared by threads and processes, so no counter could be trusted not to
 * repeat.  With 96-bit random nonces one key stays safe for about 2^32
 * messages (NIST SP 800-38D), far more chunks than a store will hold.
 * pt may be exactly out + SEAL_NONCE_LEN (sealing in place); no other
 * overlap is allowed.
 */
int aead_seal(const uint8_t key[KEY_LEN], const void *aad, size_t aadlen,
	      const void *pt, size_t ptlen, uint8_t *out)
{
	EVP_CIPHER_CTX *ctx;
	uint8_t *ct = out + SEAL_NONCE_LEN;
	int outl, ret = -EIO;

	if (random_bytes(out, SEAL_NONCE_LEN))
		return -EIO;
	ctx = EVP_CIPHER_CTX_new();
	if (!ctx)
		goto out;
	if (EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, key, out) != 1)
		goto out;
	if (aadlen && gcm_update(ctx, 1, NULL, aad, aadlen))
		goto out;
	if (gcm_update(ctx, 1, ct, pt, ptlen))
		goto out;
	if (EVP_EncryptFinal_ex(ctx, ct + ptlen, &outl) != 1 || outl != 0)
		goto out;
	if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, SEAL_TAG_LEN,
				ct + ptlen) != 1)
		goto out;
	ret = 0;
out:
	if (ret)
		ERR_clear_error();
	EVP_CIPHER_CTX_free(ctx);
	return ret;
}

/*
 * GCM writes plaintext before it can check the tag, so on failure out is
 * zeroed: callers never see unauthenticated bytes even if they ignore the
 * return value.  out may be exactly in + SEAL_NONCE_LEN (opening in
 * place: the nonce and tag are read before they could be overwritten);
 * no other overlap is allowed.
 */
int aead_open(const uint8_t key[KEY_LEN], const void *aad, size_t aadlen,
	      const uint8_t *in, size_t inlen, uint8_t *out)
{
	EVP_CIPHER_CTX *ctx = NULL;
	uint8_t tag[SEAL_TAG_LEN];
	size_t ctlen;
	int outl, ret = -EBADMSG;

	if (inlen < SEAL_OVERHEAD)
		return -EBADMSG;
	ctlen = inlen - SEAL_OVERHEAD;
	/* The tag is copied out first: ctrl takes a non-const pointer. */
	memcpy(tag, in + SEAL_NONCE_LEN + ctlen, SEAL_TAG_LEN);
	ctx = EVP_CIPHER_CTX_new();
	if (!ctx)
		goto out;
	if (EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, key, in) != 1)
		goto out;
	if (aadlen && gcm_update(ctx, 0, NULL, aad, aadlen))
		goto out;
	if (gcm_update(ctx, 0, out, in + SEAL_NONCE_LEN, ctlen))
		goto out;
	if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, SEAL_TAG_LEN,
				tag) != 1)
		goto out;
	if (EVP_DecryptFinal_ex(ctx, out + ctlen, &outl) != 1 || outl != 0)
		goto out;
	ret = 0;
out:
	if (ret) {
		ERR_clear_error();
		if (ctlen)
			memset(out, 0, ctlen);
	}
	EVP_CIPHER_CTX_free(ctx);
	return ret;
}

/* RAND_bytes takes an int length; loop for the (unused) huge case. */
int random_bytes(void *buf, size_t n)
{
	uint8_t *p = buf;

	while (n) {
		int piece = n > EVP_PIECE ? (int)EVP_PIECE : (int)n;

		if (RAND_bytes(p, piece) != 1) {
			ERR_clear_error();
			return -EIO;
		}
		p += piece;
		n -= (size_t)piece;
	}
	return 0;
}
