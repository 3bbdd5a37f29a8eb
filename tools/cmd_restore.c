/*
 * cmd_restore.c - `tresor restore STORE VOLUME SNAPSHOT PATH DEST`,
 * `tresor restore STORE --set SET SNAPSHOT DEST` (every member of a set
 * snapshot, each into DEST/VOLUME) and `tresor restore --remote URL ...`:
 * the front end of fs/restore.c, with the packs a store lacks fetched
 * from its remote (or, with --remote, from a repository into a cache).
 * Into the volume's own running mount, files are copied there by sharing
 * extents: seconds, no stored bytes.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <curl/curl.h>
#include <ftw.h>
#include <openssl/sha.h>

#include "../remote/fetch.h"
#include "../fs/control.h"
#include "../fs/damage.h"
#include "../fs/vfs.h"
#include "../remote/recover.h"
#include "../fs/restore.h"
#include "cli.h"
#include "progress.h"

static void report_item(void *arg, const char *path, const char *what, int err)
{
	(void)arg;
	if (err)
		fprintf(stderr, "tresor: restore: %s: %s: %s\n", path, what, strerror(err));
	else
		fprintf(stderr, "tresor: restore: %s: %s\n", path, what);
}

/* If a daemon serves volume vi of the store at store_dir and dest lies in
 * its mount, where that mount shows snapshot si (MOUNT/.snapshots/NAME):
 * restore_view then copies by sharing extents.  Else NULL. */
static const char *share_source(const char *store_dir,
				const struct volume_info *vi,
				const struct snapshot_info *si, const char *dest,
				char *out, size_t size)
{
	char reply[PATH_MAX + 32];
	if (control_request(store_dir, vi->id, "mountpoint", reply, sizeof(reply)) ||
	    strncmp(reply, "ok /", 4))
		return NULL;
	const char *mnt = reply + 3;
	/* DEST may not exist yet: then its parent, which must. */
	char *real = realpath(dest, NULL);
	if (!real) {
		char parent[PATH_MAX];
		snprintf(parent, sizeof(parent), "%s", dest);
		char *slash = strrchr(parent, '/');
		if (slash)
			*slash = 0;
		real = realpath(slash ? (*parent ? parent : "/") : ".", NULL);
	}
	size_t ml = strlen(mnt);
	int inside = real && !strncmp(real, mnt, ml) &&
		     (real[ml] == '/' || real[ml] == 0);
	free(real);
	if (!inside || (size_t)snprintf(out, size, "%s/%s/%s", mnt, SNAPDIR_NAME,
					si->name) >= size)
		return NULL;
	return out;
}

/* Restore PATH of view si of volume vi of the open store st into dest;
 * prints the result line.  Exit code. */
static int restore_one(struct store *st, const struct volume_info *vi,
		       const struct snapshot_info *si, const char *tree,
		       const char *dest)
{
	struct progress p;
	progress_start(&p, "restore", 0);
	struct restore_opts ro = { .progress = progress_cb, .parg = &p, .report = report_item };
	char share[PATH_MAX];
	ro.share_from = share_source(st->dir, vi, si, dest, share, sizeof(share));
	struct restore_result res;
	int err = restore_view(st, vi, si->epoch, tree, dest, &ro, &res);
	progress_end(&p);
	if (err == -ENOENT)
		die(1, "snapshot %s of volume '%s' has no '%s'", si->name, vi->name, tree);
	if (err && !res.files && !res.errors)
		die(1, "cannot restore into %s: %s", dest, strerror(-err));
	printf("restored %llu file(s), %llu bytes from %s%s%s into %s (%llu already there)%s\n",
	       (unsigned long long)res.files, (unsigned long long)res.bytes, si->name,
	       si->set_name[0] ? " of volume " : "", si->set_name[0] ? vi->name : "",
	       dest, (unsigned long long)res.skipped,
	       res.errors || err ? "; some items failed, see above" : "");
	return res.errors || err ? 1 : 0;
}

/* Restore PATH of snapshot snap of volume vol of the open store st (named
 * dir in messages) into dest; closes st.  Exit code. */
static int restore_tree(struct store *st, const char *dir, const char *vol,
			const char *snap, const char *tree, const char *dest)
{
	struct volume_info vi;
	find_volume(st->ix, dir, vol, &vi);
	struct snapshot_info si;
	find_snapshot(st->ix, dir, &vi, snap, &si);
	si.set_name[0] = 0;	/* one volume: the result line as always */
	int rc = restore_one(st, &vi, &si, tree, dest);
	fetcher_detach(st);
	store_close(st);
	return rc;
}

/* restore STORE --set SET SNAPSHOT DEST (and --remote URL --set ...):
 * every member of the set's snapshot name (latest: the newest) into
 * DEST/VOLUME; closes st.  dir names the store or the remote. */
static int restore_set(struct opts *o, struct store *st, const char *dir,
		       const char *name, const char *dest)
{
	struct set_snap *ss = NULL;
	size_t k = 0, n = 0;
	int err = 0;
	if (!strcmp(name, "latest")) {
		err = ns_set_list(st->ix, o->set, &ss, &k);
		if (!err && k)
			name = ss[k - 1].name;
	}
	struct snapshot_info *m = NULL;
	if (!err)
		err = ns_set_members(st->ix, o->set, name, &m, &n);
	if (err == -ENOENT)
		die(1, "set '%s' of store %s has no snapshot '%s' (see 'tresor snapshot list %s --set %s')",
		    o->set, dir, name, dir, o->set);
	struct volume_info *vis = NULL;
	size_t nv = 0;
	if (!err)
		err = ns_volume_list(st->ix, &vis, &nv);
	if (err)
		die(1, "cannot read set '%s' of store %s: %s", o->set, dir, strerror(-err));
	if (mkdir(dest, 0755) && errno != EEXIST)
		die(1, "cannot make %s: %s", dest, strerror(errno));
	int rc = 0;
	for (size_t i = 0; i < n; i++) {
		size_t j = 0;
		while (j < nv && vis[j].id != m[i].vol)
			j++;
		if (j == nv)
			continue;
		char sub[PATH_MAX];
		if ((size_t)snprintf(sub, sizeof(sub), "%s/%s", dest, vis[j].name) >= sizeof(sub))
			die(1, "%s: path too long", dest);
		rc |= restore_one(st, &vis[j], &m[i], "/", sub);
	}
	free(vis);
	free(m);
	free(ss);
	fetcher_detach(st);
	store_close(st);
	return rc;
}

static int rm_entry(const char *path, const struct stat *sb, int flag,
		    struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	remove(path);
	return 0;
}

/* Where restore --remote keeps its temporary lazy store for url: under
 * $TRESOR_CACHE_DIR, $XDG_CACHE_HOME/tresor or ~/.cache/tresor, named by
 * a hash of the URL so a rerun finds (and resumes from) it. */
static void cache_dir_for(const char *url, char *out, size_t size)
{
	const char *base = getenv("TRESOR_CACHE_DIR");
	char tmp[PATH_MAX];
	if (!base || !*base) {
		const char *xdg = getenv("XDG_CACHE_HOME");
		const char *home = getenv("HOME");
		if (xdg && *xdg)
			snprintf(tmp, sizeof(tmp), "%s/tresor", xdg);
		else
			snprintf(tmp, sizeof(tmp), "%s/.cache/tresor", home && *home ? home : "/tmp");
		base = tmp;
	}
	char parent[PATH_MAX - 32];
	snprintf(parent, sizeof(parent), "%.*s", (int)sizeof(parent) - 1, base);
	for (char *p = parent + 1; *p; p++)
		if (*p == '/') {
			*p = 0;
			mkdir(parent, 0700);
			*p = '/';
		}
	mkdir(parent, 0700);
	uint8_t h[SHA256_DIGEST_LENGTH];
	SHA256((const unsigned char *)url, strlen(url), h);
	char hex[17];
	hex_encode(h, 8, hex);
	snprintf(out, size, "%.*s/restore-%s", (int)(size > 40 ? size - 40 : 0), parent, hex);
}

/* restore --remote URL VOLUME SNAPSHOT PATH DEST: no local store.  The
 * key and metadata are fetched into a temporary lazy store, then only the
 * packs the tree needs, whole and verified.  Kept if the restore fails, so
 * a rerun resumes; removed when it succeeds. */
static int restore_remote(struct opts *o)
{
	if (o->npos != (o->set ? 2 : 4))
		die(EXIT_USAGE, "usage: tresor restore --remote URL VOLUME SNAPSHOT PATH DEST [remote options]\n"
		    "       tresor restore --remote URL --set SET SNAPSHOT DEST [remote options]");
	const char *url = remote_url_abs(o, o->remote);
	char cache[PATH_MAX];
	cache_dir_for(url, cache, sizeof(cache));
	struct remote_options ro;
	remote_opts(o, &ro);
	char *pass = get_passphrase(o, 0, url);
	curl_global_init(CURL_GLOBAL_DEFAULT);
	if (access(cache, F_OK)) {
		struct remote *r = open_remote(url, &ro);
		struct recover_opts rop = { .lazy = 1, .check_index = damage_check_names };
		struct recover_result res;
		int err = recover_run(r, url, &ro, cache, pass, strlen(pass), &rop, &res);
		char msg[600];
		snprintf(msg, sizeof(msg), "%s", *remote_error(r) ? remote_error(r) : strerror(-err));
		remote_close(r);
		if (err == -ENOENT)
			die(1, "%s is not a tresor repository (no tresor-repo marker or metadata)", url);
		if (err == -EKEYREJECTED)
			die(EXIT_PASSPHRASE, "wrong passphrase for the repository at %s", url);
		if (err == -EPROTONOSUPPORT && res.store_format)
			die(1, "%s: the store that pushed there is of store format %lld (%s), newer than this tresor reads (up to %d); nothing restored; upgrade tresor, then restore again",
			    url, (long long)res.store_format, res.failed, STORE_FORMAT_VERSION);
		if (err == -EPROTONOSUPPORT)
			die(1, "%s was written by a newer tresor; upgrade tresor", url);
		if (err == -EBADMSG)
			die(1, "%s: object %s is damaged or was tampered with (it fails authentication); nothing restored",
			    url, res.failed);
		if (err == -ENODATA)
			die(1, "%s: object %s is missing; the repository is incomplete, nothing restored",
			    url, res.failed);
		if (err == -EUCLEAN)
			die(1, "%s: refused: the metadata holds an unsafe file name, %s; nothing restored",
			    url, res.failed);
		if (err)
			die(1, "reading the metadata of %s failed: %s; rerun to resume", url, msg);
	}
	struct store *st;
	int err = store_open(cache, pass, strlen(pass), &st);
	free_passphrase(pass);
	if (err)
		die(1, "cannot open the temporary store %s for %s: %s; remove it and rerun",
		    cache, url, strerror(-err));
	char label[700];
	snprintf(label, sizeof(label), "restore from %s", url);
	err = fetcher_attach(st, "origin", label, FETCH_SYNC, 0);
	if (err)
		die(1, "cannot fetch packs from %s: %s", url, strerror(-err));
	int rc = o->set ? restore_set(o, st, url, o->pos[0], o->pos[1])
			: restore_tree(st, url, o->pos[0], o->pos[1], o->pos[2], o->pos[3]);
	curl_global_cleanup();
	if (rc == 0)
		nftw(cache, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	else
		fprintf(stderr, "tresor: restore from %s incomplete; rerun the same command to resume (fetched packs are kept in %s)\n",
			url, cache);
	return rc;
}

int cmd_restore(struct opts *o)
{
	if (o->remote)
		return restore_remote(o);
	if (o->npos != (o->set ? 3 : 5))
		die(EXIT_USAGE, "usage: tresor restore STORE VOLUME SNAPSHOT PATH DEST\n"
		    "       tresor restore STORE --set SET SNAPSHOT DEST   (every member into DEST/VOLUME)");
	struct store *st = open_store(o, o->pos[0]);
	/* A lazy store's packs, and bad ones, come from its remote if any. */
	char label[PATH_MAX + 16];
	snprintf(label, sizeof(label), "store %s", o->pos[0]);
	int err = fetcher_attach(st, NULL, label, FETCH_SYNC, 0);
	if (err && err != -ENOENT)
		fprintf(stderr, "tresor: store %s: its remote cannot be used to fetch missing or damaged packs: %s\n",
			o->pos[0], strerror(-err));
	if (o->set)
		return restore_set(o, st, o->pos[0], o->pos[1], o->pos[2]);
	return restore_tree(st, o->pos[0], o->pos[1], o->pos[2], o->pos[3], o->pos[4]);
}
