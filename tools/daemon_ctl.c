/*
 * daemon_ctl.c - the scheduling daemon's control socket, `tresor status`
 * and the forwarding of `tresor push` to a running daemon.
 *
 * The socket is abstract, named like a volume daemon's (control.h) with
 * volume id -1, so any command that knows the store finds it.  Only root
 * and the daemon's own user may talk to it (SO_PEERCRED).  Requests (one
 * line): "ping", "status json", "push REMOTE".  The reply is
 * "ok" or "unhealthy" or "error MESSAGE" on the first line, then a body,
 * then the daemon closes the connection.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "../fs/control.h"
#include "../fs/fetch.h"
#include "../fs/repo.h"
#include "../fs/util.h"
#include "cli.h"
#include "daemon.h"

#define SCHED_VOL (-1)	/* control_addr's volume id of the scheduler */

/* ---- status ---------------------------------------------------------- */

static void jstr(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			fprintf(f, "\\%c", *s);
		else if ((unsigned char)*s < 0x20)
			fprintf(f, "\\u%04x", *s);
		else
			fputc(*s, f);
	}
	fputc('"', f);
}

static void jtime(FILE *f, time_t t)
{
	if (t)
		fprintf(f, "%lld", (long long)t);
	else
		fputs("null", f);
}

/* Finished packs the remote does not have yet. */
static void remote_pending(struct index *ix, int64_t remote, long long *packs,
			   long long *bytes)
{
	sqlite3_stmt *q;
	*packs = *bytes = 0;
	if (sqlite3_prepare_v2(index_db(ix), "SELECT COUNT(*), COALESCE(SUM(size), 0)"
		" FROM pack p WHERE state = 1 AND NOT EXISTS (SELECT 1 FROM remote_pack r"
		" WHERE r.remote = ?1 AND r.name = p.name)", -1, &q, NULL) != SQLITE_OK)
		return;
	sqlite3_bind_int64(q, 1, remote);
	if (sqlite3_step(q) == SQLITE_ROW) {
		*packs = sqlite3_column_int64(q, 0);
		*bytes = sqlite3_column_int64(q, 1);
	}
	sqlite3_finalize(q);
}

char *status_json(struct daemon *d, int *healthy)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	if (!f)
		return NULL;
	time_t now = daemon_now();
	struct index *ix = daemon_index(d);
	/* problems are collected first, printed at the end */
	char *pbuf = NULL;
	size_t plen = 0;
	FILE *pf = open_memstream(&pbuf, &plen);
	int np = 0;
#define PROBLEM(...) do { char m_[1600]; snprintf(m_, sizeof(m_), __VA_ARGS__); \
	fputs(np++ ? "," : "", pf); jstr(pf, m_); } while (0)

	pthread_mutex_lock(&d->lock);
	fprintf(f, "{\"daemon\":{\"pid\":%d,\"config\":", (int)getpid());
	jstr(f, d->cfg_path);
	fputs(",\"store\":", f);
	jstr(f, d->cfg.store);
	fprintf(f, ",\"started\":%lld,\"now\":%lld,\"stale_push_seconds\":%lld},",
		(long long)d->started, (long long)now, (long long)d->cfg.stale_push_s);
	fputs("\"volumes\":[", f);
	for (int i = 0; i < d->cfg.nvol; i++) {
		const struct config_volume *cv = &d->cfg.vol[i];
		const struct mount_child *m = &d->mc[i];
		fprintf(f, "%s{\"name\":", i ? "," : "");
		jstr(f, cv->name);
		fputs(",\"mountpoint\":", f);
		jstr(f, cv->mountpoint);
		fprintf(f, ",\"mounted\":%s,\"pid\":%d,\"restarts\":%d,\"last_error\":",
			m->mounted ? "true" : "false", (int)m->pid, m->restarts);
		jstr(f, m->last_error);
		if (!m->mounted)
			PROBLEM("volume %s is not mounted on %s", cv->name, cv->mountpoint);
		struct volume_info vi;
		struct snapshot_info *s = NULL;
		size_t n = 0;
		if (ix && !index_volume_find(ix, cv->name, &vi))
			index_snapshot_list(ix, vi.id, &s, &n);
		size_t best = 0;
		for (size_t k = 1; k < n; k++)
			if (s[k].time >= s[best].time)
				best = k;
		fprintf(f, ",\"snapshots\":%zu,\"last_snapshot\":", n);
		if (n) {
			jstr(f, s[best].name);
			time_t t = s[best].time / 1000000000;
			fprintf(f, ",\"last_snapshot_time\":%lld,\"last_snapshot_age_seconds\":%lld}",
				(long long)t, (long long)(now - t));
		} else {
			fputs("null,\"last_snapshot_time\":null,\"last_snapshot_age_seconds\":null}", f);
		}
		free(s);
	}
	fputs("],\"remotes\":[", f);
	struct remote_cfg *rs = NULL;
	size_t nr = 0;
	if (ix)
		remote_cfg_list(ix, &rs, &nr);
	for (size_t i = 0; i < nr; i++) {
		long long packs, bytes;
		remote_pending(ix, rs[i].id, &packs, &bytes);
		time_t lp = rs[i].last_push / 1000000000;
		/* Behind: how old the newest state the remote holds is, when
		 * there is something newer to send. */
		long long behind = 0;
		if (packs || !lp)
			behind = lp ? now - lp : now - d->started;
		for (int v = 0; v < d->cfg.nvol && !behind; v++) {
			struct volume_info vi;
			struct snapshot_info *s = NULL;
			size_t n = 0;
			if (!index_volume_find(ix, d->cfg.vol[v].name, &vi) &&
			    !index_snapshot_list(ix, vi.id, &s, &n))
				for (size_t k = 0; k < n; k++)
					if (s[k].time / 1000000000 > lp)
						behind = now - lp;
			free(s);
		}
		fprintf(f, "%s{\"name\":", i ? "," : "");
		jstr(f, rs[i].name);
		fputs(",\"url\":", f);
		jstr(f, rs[i].url);
		fputs(",\"last_push\":", f);
		jtime(f, lp);
		fputs(",\"last_push_age_seconds\":", f);
		if (lp)
			fprintf(f, "%lld", (long long)(now - lp));
		else
			fputs("null", f);
		fprintf(f, ",\"behind_seconds\":%lld,\"packs_pending\":%lld,\"bytes_pending\":%lld}",
			behind, packs, bytes);
		if (d->cfg.push.kind != SCHED_NEVER &&
		    ((lp && now - lp > d->cfg.stale_push_s) ||
		     (!lp && now - d->started > d->cfg.stale_push_s)))
			PROBLEM("remote %s: last successful push %s", rs[i].name,
				lp ? "is older than stale-push" : "never happened");
	}
	free(rs);
	/* Reads of files a lazy store has not fetched fail while its remote
	 * cannot be used (files only: no request under the lock). */
	char lname[64], lwhy[700];
	if (ix && fetch_lazy_check(ix, NULL, 0, lname, sizeof(lname), lwhy, sizeof(lwhy)))
		PROBLEM("store %.250s is lazy and its remote '%s' cannot be used (%.300s): reads of files not fetched yet fail; fix the remote with 'tresor remote set %.250s %s [remote options]' or run 'tresor recover URL %.250s --full'",
			d->cfg.store, lname, lwhy, d->cfg.store, lname, d->cfg.store);
	fputs("],\"jobs\":[", f);
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
		jstr(f, sc);
		fprintf(f, ",\"running\":%s,\"last_run\":", s->running ? "true" : "false");
		jtime(f, s->last_run);
		fputs(",\"last_success\":", f);
		jtime(f, s->last_ok);
		fprintf(f, ",\"last_failed\":%s,\"last_error\":", s->last_failed ? "true" : "false");
		jstr(f, s->last_failed ? s->last_error : "");
		fprintf(f, ",\"runs\":%llu,\"failures\":%llu,\"attempts\":%d,\"next_run\":",
			(unsigned long long)s->runs, (unsigned long long)s->failures, s->attempts);
		time_t next = s->attempts ? s->next_retry : schedule_next(sched[j], now);
		if (j == JOB_PRUNE && !s->attempts)
			next = schedule_next(sched[j], now);
		jtime(f, next);
		fputc('}', f);
		if (s->last_failed)
			PROBLEM("%s failed: %s", job_names[j], s->last_error);
	}
	fputs("],\"history\":[", f);
	int first = d->nhist > HISTORY_MAX ? d->nhist - HISTORY_MAX : 0;
	for (int k = first; k < d->nhist; k++) {
		const struct history *h = &d->hist[k % HISTORY_MAX];
		fprintf(f, "%s{\"job\":\"%s\",\"slot\":%lld,\"start\":%lld,\"end\":%lld,\"ok\":%s}",
			k > first ? "," : "", job_names[h->job], (long long)h->slot,
			(long long)h->start, (long long)h->end, h->ok ? "true" : "false");
	}
	pthread_mutex_unlock(&d->lock);
#undef PROBLEM
	if (ix)
		index_close(ix);
	fclose(pf);
	fprintf(f, "],\"healthy\":%s,\"problems\":[%s]}", np ? "false" : "true",
		pbuf ? pbuf : "");
	free(pbuf);
	*healthy = !np;
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

/* "NAME [jobs=N] [limit-upload=R] [grace=D]" into *req (zeroed first, so
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
		char msg[1500];
		if (d->stopping && rc)
			snprintf(msg, sizeof(msg), "error the daemon is stopping\n");
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
	const char *keys[] = { "jobs", "limit-upload", "grace" };
	const char *vals[] = { o->jobs, o->limit_upload, o->r_grace };
	const char *flags[] = { "--jobs", "--limit-upload", "--grace" };
	struct push_req pr;
	const size_t max[] = { sizeof(pr.jobs), sizeof(pr.limit_upload), sizeof(pr.grace) };
	for (int i = 0; i < 3; i++) {
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

/* Human form of the status: a few lines from the JSON's own fields. */
static void print_text(const char *js)
{
	/* The JSON is ours and flat enough to pick fields with strstr. */
	const char *p = js;
	printf("tresor daemon: ");
	const char *h = strstr(js, "\"healthy\":");
	printf("%s\n", h && !strncmp(h + 10, "true", 4) ? "healthy" : "UNHEALTHY");
	for (p = strstr(js, "\"volumes\":[{"); p && (p = strstr(p, "{\"name\":\"")); ) {
		const char *end = strstr(p, "}");
		if (!end || (strstr(js, "\"remotes\":") && p > strstr(js, "\"remotes\":")))
			break;
		char name[128] = "", mp[1024] = "", last[128] = "";
		sscanf(p, "{\"name\":\"%127[^\"]\",\"mountpoint\":\"%1023[^\"]\"", name, mp);
		const char *m = strstr(p, "\"mounted\":");
		const char *ls = strstr(p, "\"last_snapshot\":");
		if (ls && ls < end && ls[16] == '"')
			sscanf(ls + 17, "%127[^\"]", last);
		printf("  volume %-16s %-30s %s, last snapshot %s\n", name, mp,
		       m && !strncmp(m + 10, "true", 4) ? "mounted" : "NOT MOUNTED",
		       *last ? last : "none");
		p = end;
	}
	const char *r = strstr(js, "\"remotes\":[");
	const char *jobs = strstr(js, "\"jobs\":[");
	for (p = r; p && (p = strstr(p, "{\"name\":\"")) && p < jobs; ) {
		char name[128] = "";
		long long age = -1, behind = 0, bytes = 0;
		sscanf(p, "{\"name\":\"%127[^\"]\"", name);
		const char *a = strstr(p, "\"last_push_age_seconds\":");
		if (a && sscanf(a + 24, "%lld", &age) != 1)
			age = -1;
		const char *b = strstr(p, "\"behind_seconds\":");
		if (b)
			sscanf(b + 17, "%lld", &behind);
		const char *by = strstr(p, "\"bytes_pending\":");
		if (by)
			sscanf(by + 16, "%lld", &bytes);
		if (age < 0)
			printf("  remote %-16s never pushed, %lld bytes pending\n", name, bytes);
		else
			printf("  remote %-16s last push %lld s ago, behind %lld s, %lld bytes pending\n",
			       name, age, behind, bytes);
		p = strstr(p, "}");
	}
	const char *hist = strstr(js, "\"history\":[");
	for (p = jobs; p && (p = strstr(p, "{\"name\":\"")) && (!hist || p < hist); ) {
		char name[32] = "", sched[64] = "", errm[512] = "";
		sscanf(p, "{\"name\":\"%31[^\"]\",\"schedule\":\"%63[^\"]\"", name, sched);
		const char *e = strstr(p, "\"last_error\":\"");
		if (e)
			sscanf(e + 14, "%511[^\"]", errm);
		const char *ok = strstr(p, "\"last_success\":");
		long long t = 0;
		if (ok)
			sscanf(ok + 15, "%lld", &t);
		char when[64] = "never";
		if (t) {
			time_t tt = t;
			struct tm tm;
			localtime_r(&tt, &tm);
			strftime(when, sizeof(when), "%Y-%m-%d %H:%M", &tm);
		}
		printf("  job %-9s %-18s last success %s%s%s\n", name, sched, when,
		       *errm ? ", LAST RUN FAILED: " : "", errm);
		p = strstr(p, "}");
	}
	const char *pr = strstr(js, "\"problems\":[");
	if (pr && pr[12] != ']')
		printf("  problems: %s\n", pr + 11);
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
		die(3, "store %s of %s: %s", c->store, path, strerror(errno));
	free(c);
	char *reply = NULL;
	int e = ctl_ask(real, "status json", &reply);
	if (e == -ECONNREFUSED || e == -ENOENT) {
		if (o->json)
			printf("{\"healthy\":false,\"problems\":[\"the tresor daemon is not running\"]}\n");
		die(3, "no tresor daemon runs for %s (start it: tresor daemon %s)", path, path);
	}
	if (e)
		die(3, "cannot talk to the tresor daemon of %s: %s", path, strerror(-e));
	if (!strncmp(reply, "error ", 6)) {
		reply[strcspn(reply, "\n")] = 0;
		die(3, "the tresor daemon of %s refused: %s", path, reply + 6);
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
