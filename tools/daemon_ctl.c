/*
 * daemon_ctl.c - the scheduling daemon's status (and what it shares with
 * the metrics: a volume's snapshots, a remote's health), its control
 * socket, `tresor status` and the forwarding of `tresor push` to a
 * running daemon.
 *
 * The socket is abstract, named like a volume daemon's (control.h) with
 * volume id -1, so any command that knows the store finds it.  Only root
 * and the daemon's own user may talk to it (SO_PEERCRED).  Requests (one
 * line): "ping", "status json", "push REMOTE [jobs=N] [limit-upload=R]
 * [grace=D]".  The reply is
 * "ok" or "unhealthy" or "error MESSAGE" on the first line, then a body,
 * then the daemon closes the connection.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "../fs/control.h"
#include "../remote/fetch.h"
#include "../remote/repo.h"
#include "../chunker/util.h"
#include "cli.h"
#include "daemon.h"

#define SCHED_VOL (-1)	/* control_addr's volume id of the scheduler */

/* ---- status ---------------------------------------------------------- */

static void jtime(FILE *f, time_t t)
{
	if (t)
		fprintf(f, "%lld", (long long)t);
	else
		fputs("null", f);
}

static const struct remote_state *remote_state_find(const struct daemon *d, const char *name)
{
	for (int i = 0; i < d->nrem; i++)
		if (!strcmp(d->rem[i].name, name))
			return &d->rem[i];
	return NULL;
}

int daemon_snapshots(struct index *ix, const char *vol, struct snapshot_info **s, size_t *n)
{
	struct volume_info vi;
	*s = NULL;
	*n = 0;
	int err = ns_volume_find(ix, vol, &vi);
	return err ? err : ns_snapshot_list(ix, vi.id, s, n);
}

int daemon_snapshot_name(struct daemon *d, const char *const *vols, size_t n, time_t now,
			 char *name, size_t size)
{
	*name = 0;
	int64_t ids[CONFIG_MAX_VOLUMES];
	struct index *ix = daemon_index(d);
	int err = ix ? 0 : -EIO;
	for (size_t i = 0; i < n && i < CONFIG_MAX_VOLUMES && !err; i++) {
		struct volume_info vi;
		err = ns_volume_find(ix, vols[i], &vi);
		ids[i] = vi.id;
	}
	if (!err && n)
		err = ns_snapshot_name(ix, ids, n, (int64_t)now * 1000000000, name, size);
	if (ix)
		index_close(ix);
	if (err)
		*name = 0;
	return err;
}

int daemon_volume_snaps(struct index *ix, const char *vol, struct volume_snaps *vs)
{
	memset(vs, 0, sizeof(*vs));
	struct snapshot_info *s = NULL;
	size_t n = 0;
	int err = daemon_snapshots(ix, vol, &s, &n);
	if (!err && n) {
		size_t best = 0;
		for (size_t k = 1; k < n; k++)
			if (s[k].time >= s[best].time)
				best = k;
		vs->count = n;
		vs->newest = s[best];
	}
	free(s);
	return err;
}

int daemon_set_snaps(struct index *ix, const char *set, struct set_snaps *ss)
{
	memset(ss, 0, sizeof(*ss));
	struct set_snap *sl;
	size_t n;
	int err = ns_set_list(ix, set, &sl, &n);
	if (err)
		return err;
	/* Oldest first: the last is the newest. */
	ss->count = n;
	if (n) {
		snprintf(ss->newest, sizeof(ss->newest), "%s", sl[n - 1].name);
		ss->newest_time = sl[n - 1].time;
	}
	free(sl);
	return 0;
}

void daemon_remote_health(struct daemon *d, struct index *ix, const struct remote_cfg *rc,
			  time_t now, struct remote_health *h)
{
	memset(h, 0, sizeof(*h));
	h->st = remote_state_find(d, rc->name);
	uint64_t packs, bytes;
	if (!remote_cfg_pending(ix, rc->id, &packs, &bytes)) {
		h->packs_pending = (long long)packs;
		h->bytes_pending = (long long)bytes;
	}
	time_t lp = h->last_push = rc->last_push / 1000000000;
	/* Behind: how old the newest state the remote holds is, when there
	 * is something newer to send. */
	if (h->packs_pending || !lp)
		h->behind = lp ? now - lp : now - d->started;
	for (int v = 0; v < d->cfg.nvol && !h->behind; v++) {
		struct volume_snaps vs;
		if (!daemon_volume_snaps(ix, d->cfg.vol[v].name, &vs) && vs.count &&
		    vs.newest.time / 1000000000 > lp)
			h->behind = now - lp;
	}
	h->stale = d->cfg.push.kind != SCHED_NEVER &&
		   ((lp && now - lp > d->cfg.stale_push_s) ||
		    (!lp && now - d->started > d->cfg.stale_push_s));
	h->healthy = !(h->st && h->st->last_failed) && !h->stale;
}

/* The status' problems, collected as its parts are written and printed
 * at its end. */
struct problems {
	FILE *f;
	int n;
};

static void __attribute__((format(printf, 2, 3))) problem(struct problems *p, const char *fmt, ...)
{
	char m[8192];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(m, sizeof(m), fmt, ap);
	va_end(ap);
	fputs(p->n++ ? "," : "", p->f);
	json_fstr(p->f, m);
}

static void status_volumes(struct daemon *d, struct index *ix, time_t now, FILE *f,
			   struct problems *pr)
{
	for (int i = 0; i < d->cfg.nvol; i++) {
		const struct config_volume *cv = &d->cfg.vol[i];
		const struct mount_child *m = &d->mc[i];
		fprintf(f, "%s{\"name\":", i ? "," : "");
		json_fstr(f, cv->name);
		fputs(",\"mountpoint\":", f);
		json_fstr(f, cv->mountpoint);
		fprintf(f, ",\"mounted\":%s,\"pid\":%d,\"restarts\":%d,\"last_error\":",
			m->mounted ? "true" : "false", (int)m->pid, m->restarts);
		json_fstr(f, m->last_error);
		fprintf(f, ",\"healthy\":%s", m->mounted ? "true" : "false");
		if (!m->mounted)
			problem(pr, "volume %s is not mounted on %s", cv->name, cv->mountpoint);
		struct volume_snaps vs = { 0 };
		if (ix)
			daemon_volume_snaps(ix, cv->name, &vs);
		fprintf(f, ",\"snapshots\":%zu,\"last_snapshot\":", vs.count);
		if (vs.count) {
			json_fstr(f, vs.newest.name);
			time_t t = vs.newest.time / 1000000000;
			fprintf(f, ",\"last_snapshot_time\":%lld,\"last_snapshot_age_seconds\":%lld}",
				(long long)t, (long long)(now - t));
		} else {
			fputs("null,\"last_snapshot_time\":null,\"last_snapshot_age_seconds\":null}", f);
		}
	}
}

static void status_remote(struct daemon *d, const struct remote_cfg *rc,
			  const struct remote_health *h, time_t now, FILE *f, struct problems *pr)
{
	const struct remote_state *st = h->st;
	int failed = st && st->last_failed;
	fputs("{\"name\":", f);
	json_fstr(f, rc->name);
	fputs(",\"url\":", f);
	json_fstr(f, rc->url);
	fputs(",\"last_push\":", f);
	jtime(f, h->last_push);
	fputs(",\"last_push_age_seconds\":", f);
	if (h->last_push)
		fprintf(f, "%lld", (long long)(now - h->last_push));
	else
		fputs("null", f);
	fprintf(f, ",\"behind_seconds\":%lld,\"packs_pending\":%lld,\"bytes_pending\":%lld",
		h->behind, h->packs_pending, h->bytes_pending);
	fputs(",\"last_attempt\":", f);
	jtime(f, st ? st->last_run : 0);
	fprintf(f, ",\"failures\":%llu,\"last_failed\":%s,\"last_error\":",
		st ? (unsigned long long)st->failures : 0ULL, failed ? "true" : "false");
	json_fstr(f, failed ? st->last_error : "");
	fprintf(f, ",\"attempts\":%d,\"next_retry\":", st ? st->attempts : 0);
	jtime(f, st && st->attempts ? st->next_retry : 0);
	fprintf(f, ",\"healthy\":%s}", h->healthy ? "true" : "false");
	if (failed && st->attempts)
		problem(pr, "remote %s: the last push failed (%s); the daemon retries it in %lld s",
			rc->name, st->last_error, (long long)(st->next_retry - now));
	else if (failed)
		problem(pr, "remote %s: the last push failed (%s); retries are used up: fix it and run 'tresor push %s %s'",
			rc->name, st->last_error, d->cfg.store, rc->name);
	if (h->stale)
		problem(pr, "remote %s: last successful push %s (%lld s behind, %lld bytes pending)",
			rc->name, h->last_push ? "is older than stale-push" : "never happened",
			h->behind, h->bytes_pending);
}

static void status_remotes(struct daemon *d, struct index *ix, time_t now, FILE *f,
			   struct problems *pr)
{
	struct remote_cfg *rs = NULL;
	size_t nr = 0;
	if (ix)
		remote_cfg_list(ix, &rs, &nr);
	for (size_t i = 0; i < nr; i++) {
		struct remote_health h;
		daemon_remote_health(d, ix, &rs[i], now, &h);
		fputs(i ? "," : "", f);
		status_remote(d, &rs[i], &h, now, f, pr);
	}
	free(rs);
	/* Reads of files a lazy store has not fetched fail while its remote
	 * cannot be used (files only: no request under the lock). */
	char lname[64], lwhy[700];
	if (ix && fetch_lazy_check(ix, NULL, 0, lname, sizeof(lname), lwhy, sizeof(lwhy)))
		problem(pr, "store %.250s is lazy and its remote '%s' cannot be used (%.300s): reads of files not fetched yet fail; fix the remote with 'tresor remote set %.250s %s [remote options]' or run 'tresor recover URL %.250s --full'",
			d->cfg.store, lname, lwhy, d->cfg.store, lname, d->cfg.store);
}

static void status_jobs(struct daemon *d, time_t now, FILE *f, struct problems *pr)
{
	const struct schedule *sched[JOB_COUNT] = { &d->cfg.snapshot, &d->cfg.snapshot,
						    &d->cfg.push, &d->cfg.check };
	for (int j = 0; j < JOB_COUNT; j++) {
		const struct job_state *s = &d->job[j];
		char sc[64];
		if (j == JOB_PRUNE)
			snprintf(sc, sizeof(sc), "after snapshot");
		else
			schedule_format(sched[j], sc, sizeof(sc));
		fprintf(f, "%s{\"name\":\"%s\",\"schedule\":", j ? "," : "", job_names[j]);
		json_fstr(f, sc);
		fprintf(f, ",\"running\":%s,\"last_run\":", s->running ? "true" : "false");
		jtime(f, s->last_run);
		fputs(",\"last_success\":", f);
		jtime(f, s->last_ok);
		fprintf(f, ",\"last_failed\":%s,\"last_error\":", s->last_failed ? "true" : "false");
		json_fstr(f, s->last_failed ? s->last_error : "");
		fprintf(f, ",\"runs\":%llu,\"failures\":%llu,\"attempts\":%d,\"next_run\":",
			(unsigned long long)s->runs, (unsigned long long)s->failures, s->attempts);
		time_t next = s->attempts ? s->next_retry : schedule_next(sched[j], now);
		if (j == JOB_PRUNE && !s->attempts)
			next = schedule_next(sched[j], now);
		jtime(f, next);
		fputc('}', f);
		if (s->last_failed)
			problem(pr, "%s failed: %s", job_names[j], s->last_error);
	}
}

/* The snapshot hooks that ran, per set or volume (lock held). */
static void status_hooks(struct daemon *d, FILE *f, struct problems *pr)
{
	int n = 0;
	for (int i = 0; i < DAEMON_MAX_HOOKED; i++) {
		const struct hook_state *h = &d->hook[i];
		if (!h->target[0])
			continue;
		fprintf(f, "%s{\"target\":", n++ ? "," : "");
		json_fstr(f, h->target);
		fprintf(f, ",\"runs\":%llu,\"failures\":%llu,\"last_failed\":%s,\"last_error\":",
			(unsigned long long)h->runs, (unsigned long long)h->failures,
			h->last_failed ? "true" : "false");
		json_fstr(f, h->last_failed ? h->last_error : "");
		fputc('}', f);
		if (h->last_failed)
			problem(pr, "%s: %s", h->target, h->last_error);
	}
}

/* Each configured snapshot set: its volumes and snapshots (lock held). */
static void status_sets(struct daemon *d, struct index *ix, time_t now, FILE *f,
			struct problems *pr)
{
	for (int i = 0; i < d->cfg.nset; i++) {
		const struct config_set *cs = &d->cfg.set[i];
		const struct set_job *sj = &d->set_job[i];
		char sc[64];
		schedule_format(&cs->snapshot, sc, sizeof(sc));
		fprintf(f, "%s{\"name\":", i ? "," : "");
		json_fstr(f, cs->name);
		fputs(",\"schedule\":", f);
		json_fstr(f, sc);
		fprintf(f, ",\"own_schedule\":%s,\"next_run\":", cs->own_schedule ? "true" : "false");
		jtime(f, sj->attempts ? sj->next_retry : schedule_next(&cs->snapshot, now));
		fputs(",\"last_run\":", f);
		jtime(f, sj->last_run);
		fprintf(f, ",\"runs\":%llu,\"failures\":%llu,\"last_failed\":%s,\"last_error\":",
			(unsigned long long)sj->runs, (unsigned long long)sj->failures,
			sj->last_failed ? "true" : "false");
		json_fstr(f, sj->last_failed ? sj->last_error : "");
		fprintf(f, ",\"last_skipped\":%s,\"last_marked\":%s",
			sj->last_skipped ? "true" : "false", sj->last_marked ? "true" : "false");
		/* Its restore drill (null: none configured). */
		fputs(",\"drill\":", f);
		if (cs->drill[0]) {
			fputs("{\"command\":", f);
			json_fstr(f, cs->drill);
			fputs(",\"last_run\":", f);
			jtime(f, sj->drill_last_run);
			fputs(",\"last_success\":", f);
			jtime(f, sj->drill_last_ok);
			fprintf(f, ",\"runs\":%llu,\"failures\":%llu,\"last_failed\":%s,\"snapshot\":",
				(unsigned long long)sj->drill_runs,
				(unsigned long long)sj->drill_failures,
				sj->drill_last_failed ? "true" : "false");
			json_fstr(f, sj->drill_snapshot);
			fputs(",\"last_error\":", f);
			json_fstr(f, sj->drill_last_failed ? sj->drill_error : "");
			fputc('}', f);
			if (sj->drill_last_failed)
				problem(pr, "%s", sj->drill_error);
		} else {
			fputs("null", f);
		}
		/* Taken by the snapshot job: the job's problem says it. */
		if (sj->last_failed && cs->own_schedule)
			problem(pr, "set %s failed: %s", cs->name, sj->last_error);
		fputs(",\"volumes\":[", f);
		for (int j = 0; j < cs->nvol; j++) {
			fputs(j ? "," : "", f);
			json_fstr(f, d->cfg.vol[cs->vol[j]].name);
		}
		struct set_snaps ss;
		int listed = ix && !daemon_set_snaps(ix, cs->name, &ss);
		fprintf(f, "],\"snapshots\":%zu,\"last_snapshot\":", listed ? ss.count : 0);
		if (listed && ss.count) {
			time_t t = ss.newest_time / 1000000000;
			json_fstr(f, ss.newest);
			fprintf(f, ",\"last_snapshot_time\":%lld,\"last_snapshot_age_seconds\":%lld}",
				(long long)t, (long long)(now - t));
		} else {
			fputs("null,\"last_snapshot_time\":null,\"last_snapshot_age_seconds\":null}", f);
		}
	}
}

static void status_history(struct daemon *d, FILE *f)
{
	int first = d->nhist > HISTORY_MAX ? d->nhist - HISTORY_MAX : 0;
	for (int k = first; k < d->nhist; k++) {
		const struct history *h = &d->hist[k % HISTORY_MAX];
		fprintf(f, "%s{\"job\":\"%s\",\"slot\":%lld,\"start\":%lld,\"end\":%lld,\"ok\":%s}",
			k > first ? "," : "", job_names[h->job], (long long)h->slot,
			(long long)h->start, (long long)h->end, h->ok ? "true" : "false");
	}
}

char *status_json(struct daemon *d, int *healthy)
{
	char *buf = NULL, *pbuf = NULL;
	size_t len = 0, plen = 0;
	FILE *f = open_memstream(&buf, &len);
	if (!f)
		return NULL;
	struct problems pr = { open_memstream(&pbuf, &plen), 0 };
	time_t now = daemon_now();
	struct index *ix = daemon_index(d);
	pthread_mutex_lock(&d->lock);
	fprintf(f, "{\"daemon\":{\"pid\":%d,\"config\":", (int)getpid());
	json_fstr(f, d->cfg_path);
	fputs(",\"store\":", f);
	json_fstr(f, d->cfg.store);
	fprintf(f, ",\"started\":%lld,\"now\":%lld,\"stale_push_seconds\":%lld",
		(long long)d->started, (long long)now, (long long)d->cfg.stale_push_s);
	/* The last reload: a refused one means the file on disk is not what
	 * runs, and the next start would refuse it too. */
	fprintf(f, ",\"reloads\":%llu,\"reload_ok\":%s,\"reload_message\":",
		(unsigned long long)d->reload_generation, d->reload_ok ? "true" : "false");
	json_fstr(f, d->reload_message);
	fputs("},", f);
	if (d->reload_generation && !d->reload_ok)
		problem(&pr, "the last reload of %s was refused (%s); the daemon runs the config it had: fix the file and run 'tresor daemon reload %s'",
			d->cfg_path, d->reload_message, d->cfg_path);
	fputs("\"volumes\":[", f);
	status_volumes(d, ix, now, f, &pr);
	fputs("],\"remotes\":[", f);
	status_remotes(d, ix, now, f, &pr);
	fputs("],\"jobs\":[", f);
	status_jobs(d, now, f, &pr);
	fputs("],\"sets\":[", f);
	status_sets(d, ix, now, f, &pr);
	fputs("],\"hooks\":[", f);
	status_hooks(d, f, &pr);
	fputs("],\"history\":[", f);
	status_history(d, f);
	pthread_mutex_unlock(&d->lock);
	if (ix)
		index_close(ix);
	fclose(pr.f);
	fprintf(f, "],\"healthy\":%s,\"problems\":[%s]}", pr.n ? "false" : "true",
		pbuf ? pbuf : "");
	free(pbuf);
	*healthy = !pr.n;
	if (fclose(f)) {
		free(buf);
		return NULL;
	}
	return buf;
}

/* ---- the socket ------------------------------------------------------ */

struct conn {
	struct daemon *d;
	int fd;
};

static void reply_all(int fd, const char *s)
{
	size_t len = strlen(s);
	while (len) {
		ssize_t w = write(fd, s, len);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return;
		s += w;
		len -= w;
	}
}

/* Options of a forwarded push travel as KEY=VALUE words after the remote
 * name; values keep to this set, so a word never holds a space. */
static int push_word_ok(const char *v, size_t max)
{
	size_t n = strlen(v);
	return n && n < max && strspn(v, "abcdefghijklmnopqrstuvwxyz"
				      "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789./") == n;
}

/* "NAME [jobs=N] [limit-upload=R] [grace=D] [image-every=N]" into *req (zeroed first, so
 * equal requests compare equal); 0, or -1 with an "error ...\n" reply. */
static int push_req_parse(char *s, struct push_req *req, char *bad, size_t badsize)
{
	memset(req, 0, sizeof(*req));
	char *save = NULL;
	char *w = strtok_r(s, " ", &save);
	if (!w || strlen(w) >= sizeof(req->name)) {
		snprintf(bad, badsize, "error not a remote name\n");
		return -1;
	}
	snprintf(req->name, sizeof(req->name), "%s", w);
	while ((w = strtok_r(NULL, " ", &save))) {
		char *eq = strchr(w, '=');
		char *dst = NULL;
		size_t max = 0;
		if (eq) {
			*eq = 0;
			if (!strcmp(w, "jobs"))
				dst = req->jobs, max = sizeof(req->jobs);
			else if (!strcmp(w, "limit-upload"))
				dst = req->limit_upload, max = sizeof(req->limit_upload);
			else if (!strcmp(w, "grace"))
				dst = req->grace, max = sizeof(req->grace);
			else if (!strcmp(w, "image-every"))
				dst = req->image_every, max = sizeof(req->image_every);
		}
		if (!dst || !push_word_ok(eq + 1, max)) {
			snprintf(bad, badsize, "error push option '%.60s' not understood\n", w);
			return -1;
		}
		memcpy(dst, eq + 1, strlen(eq + 1) + 1);
	}
	return 0;
}

static void *serve(void *arg)
{
	struct conn *c = arg;
	struct daemon *d = c->d;
	int fd = c->fd;
	free(c);
	struct ucred cred;
	socklen_t cl = sizeof(cred);
	char line[256];
	size_t got = 0;
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cl) ||
	    (cred.uid != 0 && cred.uid != geteuid())) {
		reply_all(fd, "error only root may talk to the tresor daemon\n");
		goto out;
	}
	struct pollfd p = { .fd = fd, .events = POLLIN };
	while (got < sizeof(line) - 1 && !memchr(line, '\n', got)) {
		if (poll(&p, 1, 5000) <= 0)
			goto out;
		ssize_t r = read(fd, line + got, sizeof(line) - 1 - got);
		if (r <= 0)
			break;
		got += r;
	}
	line[got] = 0;
	line[strcspn(line, "\r\n")] = 0;
	if (!strcmp(line, "ping")) {
		reply_all(fd, "ok\n");
	} else if (!strcmp(line, "status json") || !strcmp(line, "status")) {
		int healthy;
		char *js = status_json(d, &healthy);
		reply_all(fd, !js ? "error out of memory\n" : healthy ? "ok\n" : "unhealthy\n");
		if (js) {
			reply_all(fd, js);
			reply_all(fd, "\n");
		}
		free(js);
	} else if (!strncmp(line, "push ", 5) && line[5]) {
		struct push_req req;
		char bad[300];
		if (push_req_parse(line + 5, &req, bad, sizeof(bad))) {
			reply_all(fd, bad);
			goto out;
		}
		pthread_mutex_lock(&d->lock);
		int k = 0;
		while (k < d->npush_want && memcmp(&d->push_want[k], &req, sizeof(req)))
			k++;
		if (k == CONFIG_MAX_REMOTES) {
			pthread_mutex_unlock(&d->lock);
			reply_all(fd, "error too many pushes asked for at once; retry\n");
			goto out;
		}
		if (k == d->npush_want)
			d->push_want[d->npush_want++] = req;
		uint64_t gen = d->push_generation;
		if (write(d->wake[1], "p", 1) < 0) {
			/* full pipe: the job thread is awake anyway */
		}
		while (d->push_generation == gen)
			pthread_cond_wait(&d->cond, &d->lock);
		int rc = d->push_result;
		const struct remote_state *r;
		char msg[1500];
		if (d->stopping && rc)
			snprintf(msg, sizeof(msg), "error the daemon is stopping\n");
		else if (rc && (r = remote_state_find(d, req.name)) && r->attempts)
			snprintf(msg, sizeof(msg), "error %s; the daemon retries it in %lld s\n",
				 d->job[JOB_PUSH].last_error, (long long)(r->next_retry - daemon_now()));
		else if (rc)
			snprintf(msg, sizeof(msg), "error %s\n", d->job[JOB_PUSH].last_error);
		else
			snprintf(msg, sizeof(msg), "ok\n%s\n", d->push_json);
		pthread_mutex_unlock(&d->lock);
		reply_all(fd, msg);
	} else {
		reply_all(fd, "error unknown request\n");
	}
out:
	close(fd);
	return NULL;
}

/* A thread each: a push request waits for the push. */
static void ctl_accept(void *arg, int fd)
{
	struct conn *c = malloc(sizeof(*c));
	pthread_t t;
	pthread_attr_t at;
	pthread_attr_init(&at);
	pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
	if (!c || (c->d = arg, c->fd = fd, pthread_create(&t, &at, serve, c))) {
		free(c);
		close(fd);
	}
	pthread_attr_destroy(&at);
}

int ctl_start(struct daemon *d)
{
	struct sockaddr_un un;
	unsigned int len;
	control_addr(d->store_real, SCHED_VOL, &un, &len);
	return listener_open(&d->ctl, (struct sockaddr *)&un, len, ctl_accept, d);
}

void ctl_stop(struct daemon *d)
{
	listener_stop(&d->ctl);
}

/* ---- client side ------------------------------------------------------ */

/* Send line to the daemon of store_real; the whole reply (malloc'd) in
 * *out.  -ECONNREFUSED / -ENOENT when no daemon runs. */
int daemon_running(const char *store_real)
{
	int fd;
	if (control_connect(store_real, SCHED_VOL, &fd))
		return 0;
	close(fd);
	return 1;
}

static int ctl_ask(const char *store_real, const char *line, char **out)
{
	int fd;
	int e = control_connect(store_real, SCHED_VOL, &fd);
	if (e)
		return e;
	if (dprintf(fd, "%s\n", line) < 0) {
		close(fd);
		return -EIO;
	}
	char *buf = NULL;
	size_t blen = 0;
	FILE *f = open_memstream(&buf, &blen);
	char tmp[4096];
	for (;;) {
		ssize_t r = read(fd, tmp, sizeof(tmp));
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		fwrite(tmp, 1, r, f);
	}
	close(fd);
	fclose(f);
	*out = buf;
	return blen ? 0 : -EIO;
}

int daemon_forward_push(struct opts *o)
{
	if (getenv("TRESOR_DAEMON_CHILD") || o->npos != 2)
		return -1;
	char real[PATH_MAX];
	if (!realpath(o->pos[0], real))
		return -1;
	char *reply = NULL;
	char req[200];
	if ((size_t)snprintf(req, sizeof(req), "push %s", o->pos[1]) >= 64 + 5 ||
	    strpbrk(o->pos[1], " \n") || !*o->pos[1])
		return -1;	/* not a remote name: let push say so */
	/* The push's options go along: the daemon's child gets them, and
	 * reports a bad value as push itself would. */
	const char *keys[] = { "jobs", "limit-upload", "grace", "image-every" };
	const char *vals[] = { o->jobs, o->limit_upload, o->r_grace, o->image_every };
	const char *flags[] = { "--jobs", "--limit-upload", "--grace", "--image-every" };
	struct push_req pr;
	const size_t max[] = { sizeof(pr.jobs), sizeof(pr.limit_upload), sizeof(pr.grace),
			       sizeof(pr.image_every) };
	for (int i = 0; i < 4; i++) {
		if (!vals[i])
			continue;
		if (!push_word_ok(vals[i], max[i]))
			die(EXIT_USAGE, "%s: not a valid value: '%s'", flags[i], vals[i]);
		size_t l = strlen(req);
		snprintf(req + l, sizeof(req) - l, " %s=%s", keys[i], vals[i]);
	}
	if (ctl_ask(real, req, &reply))
		return -1;
	int rc = 0;
	if (!strncmp(reply, "ok\n", 3)) {
		char *js = reply + 3;
		js[strcspn(js, "\n")] = 0;
		if (o->json)
			printf("%s\n", js);
		else
			printf("pushed %s through the running tresor daemon: %s\n", o->pos[0], js);
	} else {
		reply[strcspn(reply, "\n")] = 0;
		fprintf(stderr, "tresor: push of store %s through the running daemon failed: %s\n",
			o->pos[0], !strncmp(reply, "error ", 6) ? reply + 6 : reply);
		rc = 1;
	}
	free(reply);
	return rc;
}

/* ---- the human form of the status ----------------------------------- */

/* Past the JSON value (object, array or string) that starts at p. */
static const char *json_skip(const char *p)
{
	if (*p != '"' && *p != '{' && *p != '[')
		return p + strcspn(p, ",}]");	/* number, true, false, null */
	int depth = 0;
	do {
		if (*p == '"') {
			for (p++; *p && *p != '"'; p++)
				if (*p == '\\' && p[1])
					p++;
		} else if (*p == '{' || *p == '[') {
			depth++;
		} else if (*p == '}' || *p == ']') {
			depth--;
		}
		if (*p)
			p++;
	} while (*p && depth > 0);
	return p;
}

/* Where the value of member key of the object at obj (ending before end)
 * starts, or NULL.  Only the object's own members count, not nested ones. */
static const char *json_at(const char *obj, const char *end, const char *key)
{
	size_t kl = strlen(key);
	const char *p = obj + 1;
	while (p < end && *p == '"') {
		const char *k = p + 1;
		p = json_skip(p);
		if (*p != ':')
			return NULL;
		p++;
		if ((size_t)(p - k) == kl + 2 && !strncmp(k, key, kl))
			return p;
		p = json_skip(p);
		if (*p == ',')
			p++;
	}
	return NULL;
}

/* The string value of key, unescaped ("" if none or null). */
static void json_get_str(const char *obj, const char *end, const char *key, char *out,
			 size_t size)
{
	const char *p = json_at(obj, end, key);
	size_t n = 0;
	if (p && *p == '"')
		for (p++; *p && *p != '"' && n < size - 1; p++) {
			if (*p != '\\' || !p[1]) {
				out[n++] = *p;
				continue;
			}
			p++;
			if (*p == 'u' && strlen(p) >= 5) {
				out[n++] = '?';	/* only control characters are escaped so */
				p += 4;
			} else {
				out[n++] = *p == 'n' ? ' ' : *p;
			}
		}
	out[n] = 0;
}

static long long json_get_num(const char *obj, const char *end, const char *key, long long dflt)
{
	const char *p = json_at(obj, end, key);
	long long v;
	return p && sscanf(p, "%lld", &v) == 1 ? v : dflt;
}

static int json_get_true(const char *obj, const char *end, const char *key)
{
	const char *p = json_at(obj, end, key);
	return p && !strncmp(p, "true", 4);
}

/* The object value of key: *o and *e set, 1; 0 if none (or null). */
static int json_obj(const char *obj, const char *end, const char *key, const char **o,
		    const char **e)
{
	const char *p = json_at(obj, end, key);
	if (!p || *p != '{')
		return 0;
	*o = p;
	*e = json_skip(p);
	return 1;
}

/* Each element of the array "key" of the top object: *obj and *end set;
 * start with *obj NULL. */
static int json_next(const char *js, const char *key, const char **obj, const char **end)
{
	const char *p;
	if (!*obj) {
		p = json_at(js, js + strlen(js), key);
		if (!p || *p != '[')
			return 0;
		p++;
	} else {
		p = *end;
		if (*p == ',')
			p++;
	}
	if (*p != '{' && *p != '"')
		return 0;
	*obj = p;
	*end = json_skip(p);
	return 1;
}

static void local_minute(time_t t, char *buf, size_t size)
{
	struct tm tm;
	if (!t) {
		snprintf(buf, size, "never");
		return;
	}
	localtime_r(&t, &tm);
	strftime(buf, size, "%Y-%m-%d %H:%M", &tm);
}

/* Human form of the status: a line per volume, remote, job and problem,
 * from the JSON's own fields. */
static void print_text(const char *js)
{
	const char *o = NULL, *e = NULL, *top = js + strlen(js);
	char name[128], s1[1024], s2[512];
	printf("tresor daemon: %s\n", json_get_true(js, top, "healthy") ? "healthy" : "UNHEALTHY");
	if (json_obj(js, top, "daemon", &o, &e) && json_get_num(o, e, "reloads", 0) > 0) {
		json_get_str(o, e, "reload_message", s1, sizeof(s1));
		printf("  last reload: %s: %s\n",
		       json_get_true(o, e, "reload_ok") ? "applied" : "REFUSED", s1);
	}
	o = e = NULL;
	while (json_next(js, "volumes", &o, &e)) {
		json_get_str(o, e, "name", name, sizeof(name));
		json_get_str(o, e, "mountpoint", s1, sizeof(s1));
		json_get_str(o, e, "last_snapshot", s2, sizeof(s2));
		printf("  volume %-16s %-30s %s, last snapshot %s\n", name, s1,
		       json_get_true(o, e, "mounted") ? "mounted" : "NOT MOUNTED", *s2 ? s2 : "none");
	}
	for (o = NULL; json_next(js, "sets", &o, &e); ) {
		json_get_str(o, e, "name", name, sizeof(name));
		json_get_str(o, e, "last_snapshot", s2, sizeof(s2));
		printf("  set    %-16s %lld snapshot(s), last %s%s\n", name,
		       json_get_num(o, e, "snapshots", 0), *s2 ? s2 : "none",
		       json_get_true(o, e, "last_skipped") ?
		       "; last run SKIPPED its snapshot (before-snapshot hook failed)" :
		       json_get_true(o, e, "last_marked") ?
		       "; last run took it MARKED (before-snapshot hook failed)" : "");
		const char *dro, *dre;
		if (json_obj(o, e, "drill", &dro, &dre)) {
			json_get_str(dro, dre, "snapshot", s1, sizeof(s1));
			if (!json_get_num(dro, dre, "last_run", 0))
				printf("         restore drill: not run yet\n");
			else
				printf("         restore drill of %s: %s\n", s1,
				       json_get_true(dro, dre, "last_failed") ? "FAILED" : "passed");
		}
	}
	for (o = NULL; json_next(js, "remotes", &o, &e); ) {
		json_get_str(o, e, "name", name, sizeof(name));
		long long age = json_get_num(o, e, "last_push_age_seconds", -1);
		long long behind = json_get_num(o, e, "behind_seconds", 0);
		long long packs = json_get_num(o, e, "packs_pending", 0);
		long long bytes = json_get_num(o, e, "bytes_pending", 0);
		long long fails = json_get_num(o, e, "failures", 0);
		if (!json_get_num(o, e, "last_push", 0))
			snprintf(s1, sizeof(s1), "never pushed");
		else
			snprintf(s1, sizeof(s1), "last push %lld s ago, behind %lld s", age, behind);
		printf("  remote %-16s %s, %lld pack(s) / %lld bytes pending, %lld failure(s)%s\n",
		       name, s1, packs, bytes, fails,
		       json_get_true(o, e, "healthy") ? "" : ", UNHEALTHY");
		json_get_str(o, e, "last_error", s1, sizeof(s1));
		if (*s1)
			printf("    last push failed: %s\n", s1);
	}
	for (o = NULL; json_next(js, "jobs", &o, &e); ) {
		json_get_str(o, e, "name", name, sizeof(name));
		json_get_str(o, e, "schedule", s2, sizeof(s2));
		json_get_str(o, e, "last_error", s1, sizeof(s1));
		char when[64];
		local_minute(json_get_num(o, e, "last_success", 0), when, sizeof(when));
		printf("  job %-9s %-18s last success %s%s%s\n", name, s2, when,
		       *s1 ? ", LAST RUN FAILED: " : "", s1);
	}
	for (o = NULL; json_next(js, "problems", &o, &e); ) {
		/* a string element: read it as the value of a key */
		char item[2100];
		snprintf(item, sizeof(item), "{\"p\":%.*s}", (int)(e - o), o);
		json_get_str(item, item + strlen(item), "p", s1, sizeof(s1));
		printf("  problem: %s\n", s1);
	}
}

int cmd_status(struct opts *o)
{
	if (o->npos > 1)
		die(EXIT_USAGE, "usage: tresor status [CONFIG] [--json]");
	const char *path = o->npos ? o->pos[0] : "/etc/tresor/tresor.conf";
	struct config *c = calloc(1, sizeof(*c));
	char err[600];
	if (!c)
		die(1, "out of memory");
	if (config_load(path, c, err, sizeof(err)))
		die(EXIT_USAGE, "%s", err);
	char real[PATH_MAX];
	if (!realpath(c->store, real))
		die(EXIT_NO_STORE, "store %s of %s: %s", c->store, path, strerror(errno));
	free(c);
	char *reply = NULL;
	int e = ctl_ask(real, "status json", &reply);
	if (e == -ECONNREFUSED || e == -ENOENT) {
		if (o->json)
			printf("{\"healthy\":false,\"problems\":[\"the tresor daemon is not running\"]}\n");
		die(EXIT_NO_DAEMON, "no tresor daemon runs for %s (start it: tresor daemon %s)", path, path);
	}
	if (e)
		die(EXIT_NO_DAEMON, "cannot talk to the tresor daemon of %s: %s", path, strerror(-e));
	if (!strncmp(reply, "error ", 6)) {
		reply[strcspn(reply, "\n")] = 0;
		die(1, "the tresor daemon of %s refused: %s", path, reply + 6);
	}
	int healthy = !strncmp(reply, "ok\n", 3);
	char *js = strchr(reply, '\n');
	js = js ? js + 1 : reply;
	if (o->json)
		fputs(js, stdout);
	else
		print_text(js);
	free(reply);
	return healthy ? 0 : 1;
}
