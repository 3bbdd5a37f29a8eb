/*
 * cmd_recover.c - `tresor recover`: rebuild a store on a new machine from
 * a remote and the passphrase alone.
 */
#include <curl/curl.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../fs/damage.h"
#include "../remote/recover.h"
#include "cli.h"
#include "progress.h"

/* recover URL STORE --full on a store recovered with --lazy: fetch every
 * pack it does not hold yet (resumable, with progress). */
static int fill_existing(struct opts *o, const char *url, const char *dir)
{
	struct store *st = open_store(o, dir);
	int64_t lazy = 0;
	index_meta_get(st->ix, "lazy", &lazy);
	struct remote_options ro;
	remote_opts(o, &ro);
	curl_global_init(CURL_GLOBAL_DEFAULT);
	struct remote *r = open_remote(url, &ro);
	struct progress p;
	progress_start(&p, "recover --full", 0);
	struct recover_opts rop = { .progress = progress_cb, .progress_arg = &p };
	struct recover_result res;
	int err = recover_fill(st, r, &rop, &res);
	progress_end(&p);
	char msg[600];
	snprintf(msg, sizeof(msg), "%s", *remote_error(r) ? remote_error(r) : strerror(-err));
	remote_close(r);
	curl_global_cleanup();
	store_close(st);
	if (err == -EBADMSG)
		die(1, "%s: object %s is damaged or was tampered with (it fails authentication); rerun to resume the other packs, or use another remote",
		    url, res.failed);
	if (err == -ENODATA)
		die(1, "%s: object %s is missing; the remote cannot complete store %s", url,
		    res.failed, dir);
	if (err)
		die(1, "completing store %s from %s failed: %s; rerun to resume", dir, url, msg);
	printf("completed %s from %s: %llu pack(s), %llu bytes fetched%s\n", dir, url,
	       (unsigned long long)res.packs, (unsigned long long)res.bytes,
	       lazy ? "" : " (it was not a lazy store)");
	return 0;
}

int cmd_recover(struct opts *o)
{
	if (o->npos != 2)
		die(EXIT_USAGE, "usage: tresor recover URL STORE [remote options]");
	const char *url = remote_url_abs(o, o->pos[0]), *dir = o->pos[1];
	if (o->lazy && o->full)
		die(EXIT_USAGE, "recover: --lazy and --full exclude each other");
	if (!access(dir, F_OK) && o->full)
		return fill_existing(o, url, dir);
	if (!access(dir, F_OK))
		die(1, "cannot recover into %s: it exists; choose a new directory (or add --full to complete a lazy recovery)", dir);
	struct remote_options ro;
	remote_opts(o, &ro);
	char *pass = get_passphrase(o, 0, url);
	curl_global_init(CURL_GLOBAL_DEFAULT);
	struct remote *r = open_remote(url, &ro);
	struct recover_result res;
	struct progress p;
	progress_start(&p, "recover", 0);
	struct recover_opts rop = { .lazy = o->lazy, .check_index = damage_check_names,
				    .progress = progress_cb,
				    .progress_arg = &p, .takeover = o->takeover,
				    .chain = o->chain };
	if (o->chain && (!*o->chain || strspn(o->chain, "0123456789abcdefABCDEF") != strlen(o->chain)))
		die(EXIT_USAGE, "--chain: the id (hex digits) of the store whose branch to recover, as the refusal listed it: %s",
		    o->chain);
	int err = recover_run(r, url, &ro, dir, pass, strlen(pass), &rop, &res);
	progress_end(&p);
	free_passphrase(pass);
	char msg[600];
	snprintf(msg, sizeof(msg), "%s", *remote_error(r) ? remote_error(r) : strerror(-err));
	remote_close(r);
	curl_global_cleanup();
	if (err && (err == -ENODATA || err == -EBADMSG) && res.image_failed[0])
		die(1, "%s: %s, a part of the newest image of the index, is %s, and the way round"
		    " it is gone too (%s is %s); nothing was installed at %s; if the store that"
		    " pushes there still exists, push it with --image-every 1 (a new image), then"
		    " recover again", url, res.image_failed, err == -ENODATA ? "missing" :
		    "damaged (fails authentication)", *res.fallback_failed ? res.fallback_failed :
		    "an older object", res.fallback_err == -EBADMSG ? "damaged" : res.fallback_err ==
		    -ENODATA ? "missing" : "unreadable", dir);
	switch (err) {
	case 0:
		break;
	case -ENOENT:
		die(1, "%s is not a tresor repository (no tresor-repo marker or metadata)", url);
	case -EPROTONOSUPPORT:
		if (res.store_format)
			die(1, "%s: the store that pushed there is of store format %lld (%s), newer than this tresor reads (up to %d); nothing was installed at %s; upgrade tresor, then recover again",
			    url, (long long)res.store_format, res.failed, STORE_FORMAT_VERSION, dir);
		die(1, "%s was written by a newer tresor; upgrade tresor", url);
	case -EKEYREJECTED:
		die(EXIT_PASSPHRASE, "wrong passphrase for the repository at %s", url);
	case -EBADMSG:
		die(1, "%s: object %s is damaged or was tampered with (it fails authentication); nothing was installed at %s",
		    url, *res.failed ? res.failed : "?", dir);
	case -ENODATA:
		die(1, "%s: object %s is missing; the repository is incomplete, nothing was installed at %s",
		    url, res.failed, dir);
	case -ENOTUNIQ:
		die(1, "%s: the metadata chain forks (two stores pushed there): %s; nothing was installed at %s; recover one branch with --chain ID",
		    url, res.forks, dir);
	case -ESRCH:
		die(1, "%s: no metadata there was written by a store with id %s (branches: %s); nothing was installed at %s",
		    url, o->chain, res.forks, dir);
	case -EUCLEAN:
		die(1, "%s: refused: the metadata holds an unsafe file name, %s; nothing was installed at %s",
		    url, res.failed, dir);
	default:
		die(1, "recovery from %s failed: %s; rerun to resume", url, msg);
	}
	if (res.image_failed[0])
		fprintf(stderr, "tresor: warning: %s: %s, a part of the newest image of the index, is"
			" %s; recovered %s instead; push the store that pushes there (its next"
			" push with --image-every 1 writes a new image) and run 'tresor check STORE"
			" --remote NAME' there\n", url, res.image_failed, res.image_err == -ENODATA ?
			"missing" : "damaged (fails authentication)", res.image ?
			"from an older image and the deltas after it" : "by replaying every delta");
	char from[80] = "";
	if (res.image)
		snprintf(from, sizeof(from), " after the image of meta/%016llx",
			 (unsigned long long)res.image);
	printf("recovered %s from %s: %llu metadata object(s)%s, %llu pack(s), %llu bytes%s\n",
	       dir, url, (unsigned long long)res.deltas, from, (unsigned long long)res.packs,
	       (unsigned long long)res.bytes,
	       o->lazy ? " (lazy: packs are fetched when read; 'recover URL STORE --full' completes it)" : "");
	if (res.claimed)
		printf("store %s now owns the chain on %s (takeover recorded as meta/%016llx): pushes of the store that pushed there before are refused from now on\n",
		       dir, url, (unsigned long long)res.claimed);
	else if (o->takeover)
		die(1, "store %s is recovered but taking the chain on %s over failed: %s; run 'tresor remote takeover %s origin' before pushing there",
		    dir, url, res.claim_error, dir);
	return 0;
}
