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
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "../fs/control.h"
#include "../fs/push.h"
#include "cli.h"
#include "config.h"
#include "progress.h"

/* A duration like 7d, 12h, 30min, 90s, 2w or 0 (no unit: seconds), in ns. */
static int64_t parse_duration(const char *s, const char *what)
{
	static const struct {
		const char *unit;
		int64_t sec;
	} units[] = { { "", 1 }, { "s", 1 }, { "min", 60 }, { "h", 3600 },
		      { "d", 86400 }, { "w", 7 * 86400 } };
	char *end;
	errno = 0;
	long long v = strtoll(s, &end, 10);
	if (errno || end == s || v < 0 || v > 100000LL * 86400)
		die(EXIT_USAGE, "%s: not a duration like 7d, 12h, 30min or 0: %s", what, s);
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
		if (!strcmp(end, units[i].unit))
			return (int64_t)v * units[i].sec * 1000000000LL;
	die(EXIT_USAGE, "%s: not a duration like 7d, 12h, 30min or 0: %s", what, s);
}

/* A rate like 10M (bytes/s; k, M, G are powers of 1024), or exit.  The
 * grammar is the config file's (config_parse_rate): one place decides. */
static uint64_t parse_rate(const char *s, const char *what)
{
	uint64_t v;
	if (config_parse_rate(s, &v))
		die(EXIT_USAGE, "%s: not a rate like 10M (bytes per second): %s", what, s);
	return v;
}

/* Local time as ISO 8601 of t ns. */
static void iso_time(int64_t t, char *out, size_t size)
{
	time_t tt = t / 1000000000;
	struct tm tm;
	localtime_r(&tt, &tm);
	strftime(out, size, "%Y-%m-%dT%H:%M:%S%z", &tm);
}

/* Remote options from argv: --endpoint E --region R --path-style
 * --virtual-hosted --ca-file F --credentials-file F --ssh-key K
 * --known-hosts F --netrc F (parsed here, after the common options). */
/* TRESOR_REMOTE_TIMEOUT=S: the per-request stall limit (default 120 s). */
static int env_timeout(void)
{
	const char *t = getenv("TRESOR_REMOTE_TIMEOUT");
	long v = t ? strtol(t, NULL, 10) : 0;
	return v > 0 && v < 86400 ? (int)v : 0;
}

void remote_opts(struct opts *o, struct remote_options *ro)
{
	memset(ro, 0, sizeof(*ro));
	ro->timeout_s = env_timeout();
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
	if (o->r_grace) {
		c.grace_ns = parse_duration(o->r_grace, "--grace");
		c.grace_set = 1;
	}
	if (o->r_lock_mode && !o->r_lock_days)
		die(EXIT_USAGE, "--object-lock-mode needs --object-lock-days N");
	if (o->r_lock_days) {
		char *end;
		long d = strtol(o->r_lock_days, &end, 10);
		if (end == o->r_lock_days || *end || d < 1 || d > 36500)
			die(EXIT_USAGE, "--object-lock-days: a number of days from 1 to 36500: %s",
			    o->r_lock_days);
		if (strncmp(c.url, "s3://", 5))
			die(EXIT_USAGE, "--object-lock-days: Object Lock exists only on S3 remotes, "
			    "not on %s", c.url);
		c.lock_days = (int)d;
		c.lock_mode = REMOTE_LOCK_GOVERNANCE;
		if (o->r_lock_mode && !strcasecmp(o->r_lock_mode, "compliance"))
			c.lock_mode = REMOTE_LOCK_COMPLIANCE;
		else if (o->r_lock_mode && strcasecmp(o->r_lock_mode, "governance"))
			die(EXIT_USAGE, "--object-lock-mode: governance or compliance, not %s",
			    o->r_lock_mode);
	}
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

/* Freed packs a remote still holds, with when each may be deleted. */
struct gone {
	char key[80];
	int64_t due;		/* ns */
};

static size_t list_gone(struct index *ix, const struct remote_cfg *c, struct gone **out)
{
	sqlite3_stmt *q;
	size_t n = 0;
	*out = NULL;
	if (sqlite3_prepare_v2(index_db(ix), "SELECT name, freed, lock_until FROM remote_gone"
			       " WHERE remote = ?1 ORDER BY freed", -1, &q, NULL) != SQLITE_OK)
		return 0;
	sqlite3_bind_int64(q, 1, c->id);
	while (sqlite3_step(q) == SQLITE_ROW) {
		if (sqlite3_column_bytes(q, 0) != PACK_NAME_LEN)
			continue;
		struct gone *g = realloc(*out, (n + 1) * sizeof(**out));
		if (!g)
			break;
		*out = g;
		repo_pack_key(sqlite3_column_blob(q, 0), g[n].key, sizeof(g[n].key));
		int64_t due = sqlite3_column_int64(q, 1) + c->grace_ns;
		int64_t lock = sqlite3_column_int64(q, 2) * 1000000000LL;
		g[n++].due = lock > due ? lock : due;
	}
	sqlite3_finalize(q);
	return n;
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
		if (cs[i].last_push)
			iso_time(cs[i].last_push, when, sizeof(when));
		struct gone *g;
		size_t ng = list_gone(ix, &cs[i], &g);
		const char *mode = cs[i].lock_mode == REMOTE_LOCK_COMPLIANCE ? "compliance"
								     : "governance";
		if (o->json) {
			printf("%s{\"name\":", i ? "," : "");
			json_str(cs[i].name);
			printf(",\"url\":");
			json_str(cs[i].url);
			printf(",\"last_push\":\"%s\",\"deltas\":%llu,\"packs_pending\":%lld,"
			       "\"bytes_pending\":%lld,\"grace_s\":%lld,\"object_lock_days\":%d,"
			       "\"object_lock_mode\":\"%s\",\"awaiting_deletion\":[", when,
			       (unsigned long long)(cs[i].next_meta - 1), pending, pbytes,
			       (long long)(cs[i].grace_ns / 1000000000LL), cs[i].lock_days,
			       cs[i].lock_days ? mode : "none");
			for (size_t k = 0; k < ng; k++) {
				char due[64];
				iso_time(g[k].due, due, sizeof(due));
				printf("%s{\"key\":\"%s\",\"due\":\"%s\",\"due_ns\":%lld}",
				       k ? "," : "", g[k].key, due, (long long)g[k].due);
			}
			printf("]}");
		} else {
			printf("%-12s %s\n  last push %s, %llu metadata object(s), %lld pack(s) / %lld bytes pending\n",
			       cs[i].name, cs[i].url, when,
			       (unsigned long long)(cs[i].next_meta - 1), pending, pbytes);
			char grace[32];
			snprintf(grace, sizeof(grace), "%llds",
				 (long long)(cs[i].grace_ns / 1000000000LL));
			if (cs[i].grace_ns % (86400LL * 1000000000LL) == 0)
				snprintf(grace, sizeof(grace), "%lldd",
					 (long long)(cs[i].grace_ns / (86400LL * 1000000000LL)));
			printf("  freed packs deleted after %s", grace);
			if (cs[i].lock_days)
				printf(" and their Object Lock (%s, %d days)", mode, cs[i].lock_days);
			if (ng) {
				char first[64], last[64];
				iso_time(g[0].due, first, sizeof(first));
				int64_t maxdue = g[0].due;
				for (size_t k = 1; k < ng; k++)
					if (g[k].due > maxdue)
						maxdue = g[k].due;
				iso_time(maxdue, last, sizeof(last));
				printf("; %zu pack(s) awaiting deletion, due %s%s%s\n", ng, first,
				       ng > 1 ? " to " : "", ng > 1 ? last : "");
			} else {
				printf("; none awaiting deletion\n");
			}
		}
		free(g);
	}
	if (o->json)
		printf("]\n");
	free(cs);
	index_close(ix);
	return 0;
}

/* remote takeover STORE NAME: this store owns the chain from now on. */
static int cmd_remote_takeover(struct opts *o)
{
	if (o->npos != 3)
		die(EXIT_USAGE, "usage: tresor remote takeover STORE NAME");
	const char *dir = o->pos[1];
	struct store *st = open_store(o, dir);
	struct remote_cfg c;
	if (remote_cfg_find(st->ix, o->pos[2], &c))
		die(1, "store %s has no remote '%s' (see 'tresor remote list %s')", dir,
		    o->pos[2], dir);
	curl_global_init(CURL_GLOBAL_DEFAULT);
	c.opt.timeout_s = env_timeout();
	struct remote *r = open_remote(c.url, &c.opt);
	uint64_t n = 0;
	char msg[800] = "";
	int err = push_takeover(st, &c, r, &n, msg, sizeof(msg));
	remote_close(r);
	store_close(st);
	curl_global_cleanup();
	if (err)
		die(1, "takeover of remote '%s' by store %s failed: %s", c.name, dir, msg);
	if (n)
		printf("store %s now owns the chain on remote '%s' (takeover recorded as meta/%016llx); its next push sends a full image; pushes of any other store there are refused from now on\n",
		       dir, c.name, (unsigned long long)n);
	else
		printf("store %s owns remote '%s' (it holds no metadata yet)\n", dir, c.name);
	return 0;
}

int cmd_remote(struct opts *o)
{
	const char *sub = o->npos ? o->pos[0] : "";
	if (!strcmp(sub, "takeover"))
		return cmd_remote_takeover(o);
	if (!strcmp(sub, "add"))
		return cmd_remote_add(o);
	if (!strcmp(sub, "list") || !strcmp(sub, "status"))
		return cmd_remote_list(o);
	die(EXIT_USAGE, "usage: tresor remote add|list|status|takeover STORE ...");
}

/* Daemons frozen for a push, thawed once its read view is taken; how
 * long they were held is reported (the mount waits only that long). */
struct frozen {
	int fds[64];
	int n;
	double t0, held;	/* monotonic s; seconds the freeze lasted */
};

static double mono_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void thaw_all(void *arg)
{
	struct frozen *f = arg;
	for (int i = 0; i < f->n; i++)
		control_thaw(f->fds[i]);
	if (f->n)
		f->held = mono_s() - f->t0;
	f->n = 0;
}

int cmd_push(struct opts *o)
{
	if (o->npos != 2)
		die(EXIT_USAGE, "usage: tresor push STORE REMOTE [--jobs N] [--limit-upload RATE] "
		    "[--grace DURATION] [--json]");
	struct push_opts po = { .jobs = PUSH_DEFAULT_JOBS, .grace_ns = -1 };
	if (o->jobs) {
		char *end;
		long j = strtol(o->jobs, &end, 10);
		if (end == o->jobs || *end || j < 1 || j > PUSH_MAX_JOBS)
			die(EXIT_USAGE, "--jobs: a number from 1 to %d: %s", PUSH_MAX_JOBS, o->jobs);
		po.jobs = (int)j;
	}
	if (o->limit_upload)
		po.limit_upload = parse_rate(o->limit_upload, "--limit-upload");
	if (o->r_grace)
		po.grace_ns = parse_duration(o->r_grace, "--grace");
	const char *dir = o->pos[0];
	struct store *st = open_store(o, dir);
	struct remote_cfg c;
	int err = remote_cfg_find(st->ix, o->pos[1], &c);
	if (err)
		die(1, "store %s has no remote '%s' (see 'tresor remote list %s')", dir,
		    o->pos[1], dir);
	push_fetch_lazy(st, &c);
	curl_global_init(CURL_GLOBAL_DEFAULT);
	c.opt.timeout_s = env_timeout();
	struct remote *r = open_remote(c.url, &c.opt);
	/* Mounted volumes: their daemons finish their packs and pause. */
	struct frozen fz = { .n = 0 };
	struct volume_info *vis;
	size_t nv;
	fz.t0 = mono_s();
	if (!index_volume_list(st->ix, &vis, &nv)) {
		for (size_t i = 0; i < nv && fz.n < 64; i++) {
			int fd;
			if (!control_freeze(st->dir, vis[i].id, &fd))
				fz.fds[fz.n++] = fd;
		}
		free(vis);
	}
	/* A daemon killed mid-write left its pack open: finish it, as the
	 * next mount would, so that push need not wait for one.  A live
	 * writer's pack is locked and left alone (push then says busy). */
	int ferr = store_finish_orphans(st);
	if (ferr < 0)
		fprintf(stderr, "tresor: store %s: cannot finish a pack left open by a crashed daemon (%s); push goes on without it\n",
			dir, strerror(-ferr));
	struct progress pg;
	char what[100];
	snprintf(what, sizeof(what), "push %s", c.name);
	progress_start(&pg, what, 0);
	po.after_snapshot = thaw_all;
	po.snapshot_arg = &fz;
	po.progress = progress_cb;
	po.progress_arg = &pg;
	struct push_result res;
	double t0 = mono_s();
	err = push_run(st, &c, r, &po, &res);
	double took = mono_s() - t0;
	thaw_all(&fz);
	progress_end(&pg);
	char name[520];
	snprintf(name, sizeof(name), "%s", remote_name(r));
	remote_close(r);
	store_close(st);
	curl_global_cleanup();
	if (err == -EBUSY)
		die(1, "store %s: a volume is being written by a daemon that did not answer; retry", dir);
	if (err == -ESTALE || err == -EPROTONOSUPPORT)	/* refused: a rerun would not help */
		die(1, "%s", res.error);
	if (err)
		die(1, "push of store %s to %s failed: %s; rerun to resume", dir, name,
		    res.error[0] ? res.error : strerror(-err));
	if (o->json)
		printf("{\"remote\":\"%s\",\"packs\":%llu,\"pack_bytes\":%llu,\"meta_bytes\":%llu,"
		       "\"records\":%llu,\"packs_skipped\":%llu,\"deleted\":%llu,"
		       "\"awaiting_deletion\":%llu,\"retained\":%llu,\"jobs\":%d,"
		       "\"seconds\":%.3f,\"freeze_ms\":%.1f}\n", c.name,
		       (unsigned long long)res.packs, (unsigned long long)res.pack_bytes,
		       (unsigned long long)res.meta_bytes, (unsigned long long)res.records,
		       (unsigned long long)res.packs_skipped, (unsigned long long)res.deleted,
		       (unsigned long long)res.awaiting_deletion,
		       (unsigned long long)res.retained, res.jobs, took, fz.held * 1000);
	else
		printf("pushed %s to %s: %llu pack(s), %llu bytes; metadata %llu bytes (%llu records);"
		       " %llu freed pack(s) deleted, %llu awaiting deletion\n",
		       dir, c.name, (unsigned long long)res.packs,
		       (unsigned long long)res.pack_bytes, (unsigned long long)res.meta_bytes,
		       (unsigned long long)res.records, (unsigned long long)res.deleted,
		       (unsigned long long)res.awaiting_deletion);
	return 0;
}
