/*
 * cmd_remote.c - `tresor remote add|set|list|status|takeover`, `tresor
 * push` and the helpers that turn remote options into a connection.
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
#include "../remote/push.h"
#include "../remote/recover.h"
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

/* The file an option names, as an absolute path in buf (or exit naming
 * both): remotes are stored and used later from elsewhere, a mount's
 * daemon from "/", where a relative path names another file or none. */
static const char *abs_file(const char *opt, const char *path, char buf[PATH_MAX])
{
	if (!path)
		return NULL;
	if (!realpath(path, buf))
		die(1, "%s %s: %s; give an existing file%s", opt, path, strerror(errno),
		    path[0] == '/' ? "" : " (a relative path is taken from the current directory)");
	return path[0] == '/' ? path : buf;	/* absolute already: kept as given */
}

const char *remote_url_abs(struct opts *o, const char *url)
{
	if (url[0] == '/' || strstr(url, "://"))
		return url;
	if (!realpath(url, o->r_abs[5]))
		die(1, "remote directory %s: %s; create it first, or give a URL (s3://, sftp://, https://)",
		    url, strerror(errno));
	return o->r_abs[5];
}

void remote_opts(struct opts *o, struct remote_options *ro)
{
	o->r_ca_file = abs_file("--ca-file", o->r_ca_file, o->r_abs[0]);
	o->r_credentials_file = abs_file("--credentials-file", o->r_credentials_file,
					 o->r_abs[1]);
	o->r_ssh_key = abs_file("--ssh-key", o->r_ssh_key, o->r_abs[2]);
	o->r_known_hosts = abs_file("--known-hosts", o->r_known_hosts, o->r_abs[3]);
	o->r_netrc = abs_file("--netrc", o->r_netrc, o->r_abs[4]);
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

/* remote add/set: the URL and the files must open the remote, and
 * (unless --no-check) the server must answer one cheap request, or exit
 * with one line saying why. */
static void check_remote_now(const struct opts *o, const char *url,
			     const struct remote_options *ro, const char *verb)
{
	if (o->no_check) {
		remote_close(open_remote(url, ro));
		return;
	}
	char why[700];
	curl_global_init(CURL_GLOBAL_DEFAULT);
	int err = remote_probe(url, ro, env_timeout() ? env_timeout() : 20, why, sizeof(why));
	curl_global_cleanup();
	if (err)
		die(1, "remote %s: %s (nothing changed; 'remote %s --no-check' %s it without trying the connection)",
		    verb, why, verb, !strcmp(verb, "add") ? "adds" : "changes");
}

static int cmd_remote_add(struct opts *o)
{
	if (o->npos != 4)
		die(EXIT_USAGE, "usage: tresor remote add STORE NAME URL [--endpoint URL] [--region R] ...");
	const char *dir = o->pos[1];
	struct remote_cfg c = { 0 };
	snprintf(c.name, sizeof(c.name), "%s", o->pos[2]);
	const char *url = remote_url_abs(o, o->pos[3]);
	if (strlen(url) >= sizeof(c.url))
		die(EXIT_USAGE, "remote add: the URL is longer than %zu bytes: %s",
		    sizeof(c.url) - 1, url);
	memcpy(c.url, url, strlen(url) + 1);
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
	/* The store and the name first (no connection for a typo there),
	 * then the URL, the files and the connection: now, not at the first
	 * push. */
	struct index *ix = open_index(dir);
	struct remote_cfg had;
	int known = !remote_cfg_find(ix, c.name, &had);
	index_close(ix);
	if (known)
		die(1, "store %s already has a remote '%s'", dir, c.name);
	check_remote_now(o, c.url, &c.opt, "add");
	ix = open_index(dir);
	/* Two rows for one repository would number its metadata twice. */
	struct remote_cfg *cs;
	size_t n;
	remote_cfg_list(ix, &cs, &n);
	for (size_t i = 0; i < n; i++)
		if (remote_url_same(cs[i].url, c.url) && strcmp(cs[i].name, c.name))
			die(1, "store %s already has this repository as remote '%s' (%s); use that name, e.g. 'tresor push %s %s'",
			    dir, cs[i].name, cs[i].url, dir, cs[i].name);
	free(cs);
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

/* remote set STORE NAME [remote options]: mend a remote's options (a key
 * moved, paths stored relative by an older tresor) keeping its state. */
static int cmd_remote_set(struct opts *o)
{
	if (o->npos != 3)
		die(EXIT_USAGE, "usage: tresor remote set STORE NAME [--ssh-key K] [--known-hosts F] [--ca-file F] ...");
	const char *dir = o->pos[1], *name = o->pos[2];
	struct remote_options set;
	remote_opts(o, &set);
	if (!set.endpoint && !set.region && !set.ca_file && !set.credentials_file &&
	    !set.ssh_key && !set.known_hosts && !set.netrc_file)
		die(EXIT_USAGE, "remote set: give the options to change (--ssh-key, --known-hosts, --ca-file, --credentials-file, --netrc, --endpoint, --region)");
	struct index *ix = open_index(dir);
	struct remote_cfg c;
	if (remote_cfg_find(ix, name, &c))
		die(1, "store %s has no remote '%s' (see 'tresor remote list %s')", dir, name, dir);
	const char **dst[] = { &c.opt.endpoint, &c.opt.region, &c.opt.ca_file,
			       &c.opt.credentials_file, &c.opt.ssh_key, &c.opt.known_hosts,
			       &c.opt.netrc_file };
	const char *src[] = { set.endpoint, set.region, set.ca_file, set.credentials_file,
			      set.ssh_key, set.known_hosts, set.netrc_file };
	for (int i = 0; i < 7; i++)
		if (src[i])
			*dst[i] = src[i];
	/* The options as they will be must open (and reach) the remote. */
	check_remote_now(o, c.url, &c.opt, "set");
	int err = index_begin(ix);
	if (!err)
		err = remote_cfg_set_opts(ix, name, &set);
	if (!err)
		err = index_commit(ix);
	index_close(ix);
	if (err)
		die(1, "cannot change remote '%s' of store %s: %s", name, dir, strerror(-err));
	printf("changed remote %s (%s) of %s\n", name, c.url, dir);
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
		uint64_t up, ub;
		remote_cfg_pending(ix, cs[i].id, &up, &ub);
		long long pending = (long long)up, pbytes = (long long)ub;
		char when[64] = "never";
		if (cs[i].last_push)
			cli_iso_time(cs[i].last_push / 1000000000, when, sizeof(when));
		struct remote_gone_pack *g;
		size_t ng = remote_cfg_gone(ix, &cs[i], &g);
		const char *mode = cs[i].lock_mode == REMOTE_LOCK_COMPLIANCE ? "compliance"
								     : "governance";
		if (o->json) {
			printf("%s{\"name\":", i ? "," : "");
			json_str(cs[i].name);
			printf(",\"url\":");
			json_str(cs[i].url);
			const char *ok[] = { "endpoint", "region", "ca_file", "credentials_file",
					     "ssh_key", "known_hosts", "netrc" };
			const char *ov[] = { cs[i].opt.endpoint, cs[i].opt.region,
					     cs[i].opt.ca_file, cs[i].opt.credentials_file,
					     cs[i].opt.ssh_key, cs[i].opt.known_hosts,
					     cs[i].opt.netrc_file };
			for (int k = 0; k < 7; k++) {
				printf(",\"%s\":", ok[k]);
				if (ov[k])
					json_str(ov[k]);
				else
					printf("null");
			}
			printf(",\"last_push\":\"%s\",\"deltas\":%llu,\"packs_pending\":%lld,"
			       "\"bytes_pending\":%lld,\"grace_s\":%lld,\"object_lock_days\":%d,"
			       "\"object_lock_mode\":\"%s\",\"awaiting_deletion\":[", when,
			       (unsigned long long)(cs[i].next_meta - 1), pending, pbytes,
			       (long long)(cs[i].grace_ns / 1000000000LL), cs[i].lock_days,
			       cs[i].lock_days ? mode : "none");
			for (size_t k = 0; k < ng; k++) {
				char due[64];
				cli_iso_time(g[k].due / 1000000000, due, sizeof(due));
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
				cli_iso_time(g[0].due / 1000000000, first, sizeof(first));
				int64_t maxdue = g[0].due;
				for (size_t k = 1; k < ng; k++)
					if (g[k].due > maxdue)
						maxdue = g[k].due;
				cli_iso_time(maxdue / 1000000000, last, sizeof(last));
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
	if (!strcmp(sub, "set"))
		return cmd_remote_set(o);
	die(EXIT_USAGE, "usage: tresor remote add|set|list|status|takeover STORE ...");
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

/* Before a push of a lazy store to a remote other than its origin: fetch
 * from the origin the packs that remote lacks and the store does not hold
 * (or exit with one line saying what to do). */
static void push_fetch_lazy(struct store *st, const struct remote_cfg *target)
{
	int64_t lazy = 0;
	index_meta_get(st->ix, "lazy", &lazy);
	struct remote_cfg src;
	if (!lazy || (!remote_cfg_find(st->ix, "origin", &src) && src.id == target->id))
		return;	/* complete, or the origin holds every pack already */
	const char *dir = st->dir;
	struct recover_result res = { 0 };
	if (!recover_fill_for(st, NULL, target->id, &(struct recover_opts){ 0 }, &res) && !res.packs)
		return;	/* every pack it lacks is here */
	if (remote_cfg_find(st->ix, "origin", &src))
		die(1, "store %s was recovered lazily and has no remote 'origin' to fetch the packs %s lacks; complete it with 'tresor recover URL %s --full' first",
		    dir, target->name, dir);
	curl_global_init(CURL_GLOBAL_DEFAULT);
	struct remote *r = NULL;
	int err = remote_open(src.url, &src.opt, &r);
	char what[100];
	snprintf(what, sizeof(what), "push %s: fetching from origin", target->name);
	struct progress p;
	progress_start(&p, what, 0);
	struct recover_opts rop = { .progress = progress_cb, .progress_arg = &p };
	if (!err)
		err = recover_fill_for(st, r, target->id, &rop, &res);
	progress_end(&p);
	char msg[600];
	snprintf(msg, sizeof(msg), "%s", r && *remote_error(r) ? remote_error(r) :
		 err == -ENODATA ? "missing there" : err == -EBADMSG ?
		 "it fails authentication" : strerror(-err));
	if (r)
		remote_close(r);
	curl_global_cleanup();
	if (err)
		die(1, "push of store %s to %s: this lazy store lacks packs %s needs and fetching %s from origin (%s) failed: %s; nothing was sent; retry when origin is reachable, or complete the store with 'tresor recover %s %s --full'",
		    dir, target->name, target->name, *res.failed ? res.failed : "them", src.url,
		    msg, src.url, dir);
}

int cmd_push(struct opts *o)
{
	if (o->npos != 2)
		die(EXIT_USAGE, "usage: tresor push STORE REMOTE [--jobs N] [--limit-upload RATE] "
		    "[--grace DURATION] [--image-every N] [--json]");
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
	if (o->image_every) {
		char *end;
		long e = strtol(o->image_every, &end, 10);
		if (end == o->image_every || *end || e < 0 || e > 1000000)
			die(EXIT_USAGE, "--image-every: a number of pushes from 1 to 1000000, or 0"
			    " for never: %s", o->image_every);
		po.image_every = e ? (int)e : -1;
	}
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
	if (!ns_volume_list(st->ix, &vis, &nv)) {
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
	char meta_del[120] = "";
	if (res.meta_deleted)
		snprintf(meta_del, sizeof(meta_del), "; %llu metadata object(s) an image made"
			 " unnecessary deleted", (unsigned long long)res.meta_deleted);
	if (o->json)
		printf("{\"remote\":\"%s\",\"packs\":%llu,\"pack_bytes\":%llu,\"meta_bytes\":%llu,"
		       "\"records\":%llu,\"packs_skipped\":%llu,\"deleted\":%llu,"
		       "\"awaiting_deletion\":%llu,\"retained\":%llu,\"jobs\":%d,"
		       "\"image\":%llu,\"image_bytes\":%llu,\"meta_deleted\":%llu,"
		       "\"images_awaiting\":%llu,"
		       "\"seconds\":%.3f,\"freeze_ms\":%.1f}\n", c.name,
		       (unsigned long long)res.packs, (unsigned long long)res.pack_bytes,
		       (unsigned long long)res.meta_bytes, (unsigned long long)res.records,
		       (unsigned long long)res.packs_skipped, (unsigned long long)res.deleted,
		       (unsigned long long)res.awaiting_deletion,
		       (unsigned long long)res.retained, res.jobs, (unsigned long long)res.image,
		       (unsigned long long)res.image_bytes, (unsigned long long)res.meta_deleted,
		       (unsigned long long)res.meta_awaiting, took, fz.held * 1000);
	else
		printf("pushed %s to %s: %llu pack(s), %llu bytes; metadata %llu bytes (%llu records);"
		       " %llu freed pack(s) deleted, %llu awaiting deletion%s\n",
		       dir, c.name, (unsigned long long)res.packs,
		       (unsigned long long)res.pack_bytes, (unsigned long long)res.meta_bytes,
		       (unsigned long long)res.records, (unsigned long long)res.deleted,
		       (unsigned long long)res.awaiting_deletion, meta_del);
	return 0;
}
