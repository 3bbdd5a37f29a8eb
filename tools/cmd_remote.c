/*
 * cmd_remote.c - `tresor remote add|list|status`, `tresor push` and
 * the helpers that turn remote options into a connection.
 *
 * Remote options (endpoint, region, credential and trust files) are given
 * once at `remote add` and kept in the store; secrets never are: they come
 * from the environment or from files only their owner can read.
 */
#include <curl/curl.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../fs/control.h"
#include "../fs/push.h"
#include "cli.h"

/* Remote options from argv: --endpoint E --region R --path-style
 * --virtual-hosted --ca-file F --credentials-file F --ssh-key K
 * --known-hosts F --netrc F (parsed here, after the common options). */
void remote_opts(struct opts *o, struct remote_options *ro)
{
	memset(ro, 0, sizeof(*ro));
	ro->endpoint = o->r_endpoint;
	ro->region = o->r_region;
	ro->path_style = o->r_path_style;
	ro->ca_file = o->r_ca_file;
	ro->credentials_file = o->r_credentials_file;
	ro->ssh_key = o->r_ssh_key;
	ro->known_hosts = o->r_known_hosts;
	ro->netrc_file = o->r_netrc;
}

struct remote *open_remote(const char *url, const struct remote_options *ro)
{
	struct remote *r = NULL;
	int err = remote_open(url, ro, &r);
	if (err) {
		const char *msg = r ? remote_error(r) : strerror(-err);
		die(1, "cannot use remote %s: %s", url, *msg ? msg : strerror(-err));
	}
	return r;
}

static int cmd_remote_add(struct opts *o)
{
	if (o->npos != 4)
		die(EXIT_USAGE, "usage: tresor remote add STORE NAME URL [--endpoint URL] [--region R] ...");
	const char *dir = o->pos[1];
	struct remote_cfg c = { 0 };
	snprintf(c.name, sizeof(c.name), "%s", o->pos[2]);
	snprintf(c.url, sizeof(c.url), "%s", o->pos[3]);
	remote_opts(o, &c.opt);
	/* Check the URL and options now, not at the first push. */
	struct remote *r = open_remote(c.url, &c.opt);
	remote_close(r);
	struct index *ix = open_index(dir);
	int err = index_begin(ix);
	if (!err)
		err = remote_cfg_add(ix, &c);
	if (!err)
		err = index_commit(ix);
	index_close(ix);
	if (err == -EEXIST)
		die(1, "store %s already has a remote '%s'", dir, c.name);
	if (err)
		die(1, "cannot add remote '%s' to store %s: %s", c.name, dir, strerror(-err));
	printf("added remote %s (%s) to %s; 'tresor push %s %s' sends it everything\n",
	       c.name, c.url, dir, dir, c.name);
	return 0;
}

static int cmd_remote_list(struct opts *o)
{
	if (o->npos != 2)
		die(EXIT_USAGE, "usage: tresor remote list|status STORE [--json]");
	struct index *ix = open_index(o->pos[1]);
	struct remote_cfg *cs;
	size_t n;
	remote_cfg_list(ix, &cs, &n);
	if (o->json)
		printf("[");
	for (size_t i = 0; i < n; i++) {
		/* Pending: finished packs the remote does not have. */
		sqlite3_stmt *q;
		long long pending = 0, pbytes = 0;
		if (sqlite3_prepare_v2(index_db(ix), "SELECT COUNT(*), COALESCE(SUM(size), 0)"
			" FROM pack p WHERE state = 1 AND NOT EXISTS (SELECT 1 FROM remote_pack r"
			" WHERE r.remote = ?1 AND r.name = p.name)", -1, &q, NULL) == SQLITE_OK) {
			sqlite3_bind_int64(q, 1, cs[i].id);
			if (sqlite3_step(q) == SQLITE_ROW) {
				pending = sqlite3_column_int64(q, 0);
				pbytes = sqlite3_column_int64(q, 1);
			}
			sqlite3_finalize(q);
		}
		char when[64] = "never";
		if (cs[i].last_push) {
			time_t t = cs[i].last_push / 1000000000;
			struct tm tm;
			localtime_r(&t, &tm);
			strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S%z", &tm);
		}
		if (o->json) {
			printf("%s{\"name\":", i ? "," : "");
			json_str(cs[i].name);
			printf(",\"url\":");
			json_str(cs[i].url);
			printf(",\"last_push\":\"%s\",\"deltas\":%llu,\"packs_pending\":%lld,"
			       "\"bytes_pending\":%lld}", when,
			       (unsigned long long)(cs[i].next_meta - 1), pending, pbytes);
		} else {
			printf("%-12s %s\n  last push %s, %llu metadata object(s), %lld pack(s) / %lld bytes pending\n",
			       cs[i].name, cs[i].url, when,
			       (unsigned long long)(cs[i].next_meta - 1), pending, pbytes);
		}
	}
	if (o->json)
		printf("]\n");
	free(cs);
	index_close(ix);
	return 0;
}

int cmd_remote(struct opts *o)
{
	const char *sub = o->npos ? o->pos[0] : "";
	if (!strcmp(sub, "add"))
		return cmd_remote_add(o);
	if (!strcmp(sub, "list") || !strcmp(sub, "status"))
		return cmd_remote_list(o);
	die(EXIT_USAGE, "usage: tresor remote add|list|status STORE ...");
}

/* Daemons frozen for a push, thawed once its read view is taken. */
struct frozen {
	int fds[64];
	int n;
};

static void thaw_all(void *arg)
{
	struct frozen *f = arg;
	for (int i = 0; i < f->n; i++)
		control_thaw(f->fds[i]);
	f->n = 0;
}

int cmd_push(struct opts *o)
{
	if (o->npos != 2)
		die(EXIT_USAGE, "usage: tresor push STORE REMOTE [--json]");
	const char *dir = o->pos[0];
	struct store *st = open_store(o, dir);
	struct remote_cfg c;
	int err = remote_cfg_find(st->ix, o->pos[1], &c);
	if (err)
		die(1, "store %s has no remote '%s' (see 'tresor remote list %s')", dir,
		    o->pos[1], dir);
	curl_global_init(CURL_GLOBAL_DEFAULT);
	struct remote *r = open_remote(c.url, &c.opt);
	/* Mounted volumes: their daemons finish their packs and pause. */
	struct frozen fz = { .n = 0 };
	struct volume_info *vis;
	size_t nv;
	if (!index_volume_list(st->ix, &vis, &nv)) {
		for (size_t i = 0; i < nv && fz.n < 64; i++) {
			int fd;
			if (!control_freeze(st->dir, vis[i].id, &fd))
				fz.fds[fz.n++] = fd;
		}
		free(vis);
	}
	struct push_result res;
	err = push_run(st, &c, r, thaw_all, &fz, &res);
	thaw_all(&fz);
	char msg[600];
	snprintf(msg, sizeof(msg), "%s", *remote_error(r) ? remote_error(r) : strerror(-err));
	char name[520];
	snprintf(name, sizeof(name), "%s", remote_name(r));
	remote_close(r);
	store_close(st);
	curl_global_cleanup();
	if (err == -EBUSY)
		die(1, "store %s: a volume is being written by a daemon that did not answer; retry", dir);
	if (err)
		die(1, "push of store %s to %s failed: %s; rerun to resume", dir, name, msg);
	if (o->json)
		printf("{\"remote\":\"%s\",\"packs\":%llu,\"pack_bytes\":%llu,\"meta_bytes\":%llu,"
		       "\"records\":%llu}\n", c.name, (unsigned long long)res.packs,
		       (unsigned long long)res.pack_bytes, (unsigned long long)res.meta_bytes,
		       (unsigned long long)res.records);
	else
		printf("pushed %s to %s: %llu pack(s), %llu bytes; metadata %llu bytes (%llu records)\n",
		       dir, c.name, (unsigned long long)res.packs,
		       (unsigned long long)res.pack_bytes, (unsigned long long)res.meta_bytes,
		       (unsigned long long)res.records);
	return 0;
}
