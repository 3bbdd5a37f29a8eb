/*
 * recover.h - rebuild a store from a remote and the passphrase alone.
 */
#ifndef TRESOR_RECOVER_H
#define TRESOR_RECOVER_H

#include "repo.h"

/*
 * Rebuild a store at dir from remote r with the passphrase: key file,
 * the newest image of the index and the deltas after it in order (no
 * image: every delta), every pack (verified).  Built in DIR.recover and
 * renamed into place at the end; a rerun resumes (packs already there are
 * kept).  -ENOENT: not a tresor repository; -EPROTONOSUPPORT: newer
 * (the repository, or, with res->store_format set, the store format of
 * the store that pushed there: res->failed names its first delta);
 * -EKEYREJECTED: wrong passphrase; -EBADMSG: a damaged object; -ENODATA:
 * a missing object; -EUCLEAN: the metadata names a file "..", "." or
 * with a '/' (res->failed names the object or entry in these cases);
 * -ENOTUNIQ: the chain forks (two stores continued it) and ro->chain
 * names none of them (res->forks lists the branches); -ESRCH: no delta
 * of the store ro->chain names.
 */
struct recover_opts {
	/* Key and metadata only: packs come on demand (fetch.h) and by
	 * recover_fill; the index says so (meta "lazy" = 1). */
	int lazy;
	/* Announce on the remote that the new store owns the chain (an
	 * empty takeover delta, push_claim): the store that pushed there
	 * before is refused from then on.  0: the remote is only read (a
	 * drill); the new store's first push continues the chain only if
	 * what it recovered is still the newest there. */
	int takeover;
	/* A forked chain: recover the branch whose newest delta was written
	 * by the store whose id starts with these hex digits (NULL: refuse
	 * a fork). */
	const char *chain;
	/* Bytes of packs fetched so far / to fetch (may be NULL); called
	 * from the fetching threads, one at a time. */
	void (*progress)(void *arg, uint64_t done, uint64_t total);
	void *progress_arg;
	/* Checks the rebuilt index before anything is fetched or put in
	 * place (the namespace's: no entry named "..", "." or with a '/',
	 * fs/damage.h damage_check_names): 0, or -EUCLEAN with the offending
	 * object or entry in why.  Every caller that recovers a store must
	 * set it; NULL is refused (-EINVAL). */
	int (*check_index)(struct index *ix, char *why, size_t size);
};

struct recover_result {
	uint64_t deltas, packs, bytes;
	char failed[160];	/* the object that was missing or damaged */
	char forks[800];	/* -ENOTUNIQ: the branches, one line */
	uint64_t tip;		/* the delta recovered up to */
	int64_t store_format;	/* -EPROTONOSUPPORT: the store format of the
				 * delta refused (newer than STORE_FORMAT_VERSION),
				 * 0: the repository version was */
	uint64_t image;		/* the object whose image it started from, 0: none */
	uint64_t claimed;	/* takeover: the takeover delta, 0: not taken over */
	char claim_error[700];	/* takeover asked for but failed: why */
	/* The newest image's part that was missing (-ENODATA) or failed
	 * authentication (-EBADMSG), image_err: recovered from an older
	 * image or by replay instead.  If that failed too, the run returns
	 * image_err with failed naming the part, fallback_failed the
	 * object the way round lacked and fallback_err why. */
	char image_failed[160];
	int image_err;
	char fallback_failed[160];
	int fallback_err;
};
int recover_run(struct remote *r, const char *url,
		const struct remote_options *opt, const char *dir,
		const char *pass, size_t passlen, const struct recover_opts *ro,
		struct recover_result *res);

/*
 * Complete a lazy store from remote r: fetch every pack it names and does
 * not hold (verified), then clear its lazy mark.  Resumable.  Errors as
 * recover_run (res->failed names the object).
 */
int recover_fill(struct store *st, struct remote *r,
		 const struct recover_opts *ro, struct recover_result *res);

/*
 * Before a lazy store is pushed to remote id target (not its origin):
 * fetch from r every pack the index names that target is not known to
 * hold (remote_pack) and the store does not hold, verified, so the push
 * can send them all.  The lazy mark stays.  Resumable; errors as
 * recover_fill.  r NULL: fetch nothing, only count them in res->packs.
 */
int recover_fill_for(struct store *st, struct remote *r, int64_t target,
		     const struct recover_opts *ro, struct recover_result *res);

#endif
