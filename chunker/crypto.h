/*
 * crypto.h - the store's keys and the primitives built on them.
 *
 * Owns: the key file (a random master key wrapped by a passphrase-derived
 * key), the sub-keys derived from the master key, keyed chunk IDs and AEAD
 * sealing.  Everything goes through OpenSSL.  Nothing here logs, and every
 * buffer that held a secret is wiped before it is freed.
 */
#ifndef TRESOR_CRYPTO_H
#define TRESOR_CRYPTO_H

#include <stddef.h>
#include <stdint.h>

#define KEY_LEN 32
#define CHUNK_ID_LEN 32
#define SEAL_NONCE_LEN 12
#define SEAL_TAG_LEN 16
#define SEAL_OVERHEAD (SEAL_NONCE_LEN + SEAL_TAG_LEN)

/* Sub-keys, each HKDF-SHA-256(master, info = purpose string). */
struct store_keys {
	uint8_t enc[KEY_LEN];	/* AES-256-GCM: chunks, pack footers */
	uint8_t id[KEY_LEN];	/* HMAC-SHA-256: chunk IDs */
	uint8_t gear[KEY_LEN];	/* seed of the chunker's gear table */
	uint8_t meta[KEY_LEN];	/* AES-256-GCM: metadata sent offsite */
	uint8_t name[KEY_LEN];	/* HMAC-SHA-256: remote object names */
};

/* scrypt work factor; defaults are KDF_LOG2N_DEFAULT, r = 8, p = 1. */
#define KDF_LOG2N_DEFAULT 17
struct kdf_params {
	uint32_t log2n;
	uint32_t r;
	uint32_t p;
};

/*
 * Create a new key file at path (mode 0600, O_EXCL: never overwrites) with
 * a fresh random 64-byte master key wrapped under scrypt(passphrase).
 * kp == NULL means the defaults.  Accepted: 10 <= log2n <= 22,
 * 1 <= r <= 32, 1 <= p <= 16, and 128 * r * 2^log2n <= 4 GiB.
 * Fills *keys.  Returns 0, -EEXIST, -EINVAL (bad params), or -errno.
 */
int keyfile_create(const char *path, const char *pass, size_t passlen,
		   const struct kdf_params *kp, struct store_keys *keys);

/*
 * Unwrap the key file at path with the passphrase and fill *keys.
 * Returns 0; -EKEYREJECTED for a wrong passphrase; -EBADMSG for a file
 * that is not a tresor key file or is damaged; -EPROTONOSUPPORT for a
 * newer key-file version; -errno for I/O errors.
 */
int keyfile_open(const char *path, const char *pass, size_t passlen,
		 struct store_keys *keys);

/*
 * Change the passphrase of the key file at path: the master key (so every
 * sub-key, and all data) stays, wrapped under scrypt(newpass) with a
 * fresh salt and kp (NULL: the file's parameters), the file replaced
 * atomically.  0; -EKEYREJECTED if oldpass does not open it; -EINVAL for
 * bad kp; as keyfile_open otherwise.
 */
int keyfile_rewrap(const char *path, const char *oldpass, size_t oldlen,
		   const char *newpass, size_t newlen, const struct kdf_params *kp);

/* Keyed chunk ID: HMAC-SHA-256(keys->id, data).  Cannot fail short of
 * OpenSSL running out of memory, in which case it aborts: a wrong ID would
 * silently corrupt the store. */
void chunk_id_compute(const struct store_keys *keys, const void *data,
		      size_t len, uint8_t out[CHUNK_ID_LEN]);

/* Keyed name for a remote object or other label: HMAC-SHA-256(keys->name,
 * data), hex-encoded into out (65 bytes). */
void name_hmac_hex(const struct store_keys *keys, const void *data,
		   size_t len, char out[65]);

/*
 * AES-256-GCM.  out receives nonce || ciphertext || tag and must hold
 * ptlen + SEAL_OVERHEAD bytes; the nonce is random.  aad may be NULL when
 * aadlen is 0.  pt may be exactly out + SEAL_NONCE_LEN (in place); no
 * other overlap.  Returns 0 or -EIO (OpenSSL failure).
 */
int aead_seal(const uint8_t key[KEY_LEN], const void *aad, size_t aadlen,
	      const void *pt, size_t ptlen, uint8_t *out);

/*
 * Inverse of aead_seal: in holds inlen bytes (>= SEAL_OVERHEAD), out
 * receives inlen - SEAL_OVERHEAD bytes.  Returns 0 or -EBADMSG when the
 * bytes or the aad are not what was sealed (out is then zeroed).  out may
 * be exactly in + SEAL_NONCE_LEN (in place); no other overlap.
 */
int aead_open(const uint8_t key[KEY_LEN], const void *aad, size_t aadlen,
	      const uint8_t *in, size_t inlen, uint8_t *out);

/* Fill buf with n cryptographically random bytes; 0 or -EIO. */
int random_bytes(void *buf, size_t n);

#endif
