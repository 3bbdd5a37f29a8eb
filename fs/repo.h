/*
 * repo.h - the remote repository shared by push and recovery: remotes
 * configured in the index, object keys and sealed metadata deltas.
 *
 * Remote layout (version 1, see docs/FORMAT.md):
 *   tresor-repo          "TRESORRP", u32 version, u32 0 (plaintext marker)
 *   keys/key             the store's key file, as is (passphrase-wrapped)
 *   data/XX/NAME         finished packs, byte for byte
 *   meta/NNNNNNNNNNNNNNNN  metadata deltas 1, 2, ... (16 hex digits):
 *                        AES-256-GCM under the meta sub-key, AAD
 *                        "tresor meta v1" || u64 n, of the zstd-compressed
 *                        changelog delta (changelog.h)
 * A push uploads the packs a delta needs, then the delta: the remote is
 * restorable at every moment.  Object names and sizes say nothing about
 * file names or sizes: packs have random names and are ~32 MiB.
 */
#ifndef TRESOR_REPO_H
#define TRESOR_REPO_H

#include "../remote/remote.h"
#include "store.h"

#define REPO_VERSION 1

/* A remote as configured in the store. */
struct remote_cfg {
	int64_t id;
	char name[64];
	char url[512];
	struct remote_options opt;
	char strs[6][512];	/* backing for opt's strings */
	uint64_t last_seq;	/* changelog sequence pushed so far */
	uint64_t next_meta;	/* number of the next delta object */
	int64_t last_push;	/* ns, 0 = never */
	/* Packs freed locally are deleted on the remote this long after the
	 * delta that stops naming them is published (default 7 days; at
	 * add, grace_set 0 means the default). */
	int64_t grace_ns;
	int grace_set;
	/* S3 Object Lock: mode REMOTE_LOCK_* and retention in days for
	 * every object uploaded; 0 days: none. */
	int lock_mode;
	int lock_days;
	int64_t meta_lock_until;	/* s: retention of the oldest non-pack object */
};

#define REPO_DEFAULT_GRACE_NS (7LL * 86400 * 1000000000)

/* Add a remote to the store (and start noting changes).  -EEXIST. */
int remote_cfg_add(struct index *ix, const struct remote_cfg *c);
int remote_cfg_find(struct index *ix, const char *name, struct remote_cfg *c);
int remote_cfg_list(struct index *ix, struct remote_cfg **cs, size_t *n);
/* Finished packs the remote does not hold yet: how many, how many bytes. */
int remote_cfg_pending(struct index *ix, int64_t remote, uint64_t *packs, uint64_t *bytes);
/* Replace the options of remote name that o sets (non-NULL strings; the
 * rest stay).  -ENOENT: no such remote. */
int remote_cfg_set_opts(struct index *ix, const char *name, const struct remote_options *o);

/* Wall-clock time in ns that remote schedules (grace, Object Lock dates)
 * use: CLOCK_REALTIME plus TRESOR_TEST_CLOCK_OFFSET seconds if set (a test
 * hook standing for days going by; never set it in production). */
int64_t repo_now_ns(void);

/* Remote key of a pack ("data/XX/NAME") and of metadata delta n. */
void repo_pack_key(const uint8_t name[PACK_NAME_LEN], char *key, size_t size);
void repo_meta_key(uint64_t n, char *key, size_t size);

/* Compress and seal a delta as meta object n (AAD binds n). */
int repo_seal_delta(const struct store *st, uint64_t n, const uint8_t *d,
		    size_t len, uint8_t **out, size_t *outlen);
/* Inverse of repo_seal_delta: -EBADMSG if it does not authenticate as n. */
int repo_open_delta(const struct store_keys *keys, uint64_t n,
		    const uint8_t *in, size_t len, uint8_t **out, size_t *outlen);

#endif
