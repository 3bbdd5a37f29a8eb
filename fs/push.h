/*
 * push.h - replicate a store to a remote, and rebuild a store from one.
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
#ifndef TRESOR_PUSH_H
#define TRESOR_PUSH_H

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
};

/* Add a remote to the store (and start noting changes).  -EEXIST. */
int remote_cfg_add(struct index *ix, const struct remote_cfg *c);
int remote_cfg_find(struct index *ix, const char *name, struct remote_cfg *c);
int remote_cfg_list(struct index *ix, struct remote_cfg **cs, size_t *n);

struct push_result {
	uint64_t packs, pack_bytes;	/* sent now */
	uint64_t meta_bytes, records;	/* the delta sent now */
	uint64_t packs_pending;		/* finished packs not yet there (before) */
};

/*
 * Push the store to r (configured as c).  after_snapshot (may be NULL) is
 * called once the consistent read view is taken: the caller thaws the
 * daemons it froze.  Returns 0 or -errno (message in remote_error(r) for
 * remote errors).
 */
int push_run(struct store *st, struct remote_cfg *c, struct remote *r,
	     void (*after_snapshot)(void *), void *arg,
	     struct push_result *res);

/*
 * Rebuild a store at dir from remote r with the passphrase: key file,
 * every delta in order, every pack (verified).  Built in DIR.recover and
 * renamed into place at the end; a rerun resumes (packs already there are
 * kept).  -ENOENT: not a tresor repository; -EPROTONOSUPPORT: newer;
 * -EKEYREJECTED: wrong passphrase; -EBADMSG: a damaged object; -ENODATA:
 * a missing object (res->failed names it in both cases).
 */
struct recover_result {
	uint64_t deltas, packs, bytes;
	char failed[160];	/* the object that was missing or damaged */
};
int recover_run(struct remote *r, const char *url,
		const struct remote_options *opt, const char *dir,
		const char *pass, size_t passlen, struct recover_result *res);

#endif
