/*
 * retire.h - what a push lets go of on the remote, after it published
 * the new state (push.c calls these; FORMAT.md §15.4-15.5).  Each returns
 * 0 or -errno (remote_error(r) says what failed) and adds what it did to
 * res.
 */
#ifndef TRESOR_RETIRE_H
#define TRESOR_RETIRE_H

#include "push.h"

/*
 * Extend to until the Object Lock retention of what a recovery reads:
 * tresor-repo, the key file (and key_object, the current one after a
 * passphrase change), the metadata objects from the newest image on
 * (newest: the newest object's header) and that image's parts; those
 * below wait for their deletion, which their retention must not hold up
 * for ever.  Notes the new retention in the index.
 */
int retire_renew_meta(struct store *st, struct remote_cfg *c, struct remote *r,
		      const struct repo_meta_hdr *newest, const char *key_object,
		      int64_t until, uint64_t *retained);

/*
 * Delete the freed packs whose grace (from when the delta not naming them
 * was published; grace, not the remote's own, may be given) and retention
 * have both passed; count the rest as awaiting.  A local pack_trash row
 * is dropped once no remote holds or awaits the pack.
 */
int retire_packs(struct store *st, struct remote_cfg *c, struct remote *r,
		 int64_t grace, struct push_result *res);

/*
 * Delete the metadata objects and image parts a newer image made
 * unnecessary, once its grace and every retention below it passed
 * (retire.c says which, and why it is safe for a recovery running now).
 */
int retire_meta(struct store *st, struct remote_cfg *c, struct remote *r,
		const struct repo_meta_hdr *newest, int64_t grace,
		struct push_result *res);

#endif
