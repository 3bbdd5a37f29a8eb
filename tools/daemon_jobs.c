/*
 * daemon_jobs.c - the daemon's jobs and the child processes that run
 * them: snapshot + prune, push and check (its job in daemon_check.c) as
 * child `tresor` commands (see daemon.h for why), their results and
 * retries, and each remote's push state (a failed remote is retried by
 * itself, with the request that failed).  The job thread is the only caller; what status and the
 * metrics read is noted under d->lock.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../remote/repo.h"
#include "../chunker/util.h"
#include "cli.h"
#include "daemon.h"
#include "hook.h"

/* ---- per-remote push state ------------------------------------------ */

struct remote_state *jobs_remote_state(struct daemon *d, const char *name)
{
	for (int i = 0; i < d->nrem; i++)
		if (!strcmp(d->rem[i].name, name))
			return &d->rem[i];
	if (d->nrem == DAEMON_MAX_REMOTES || strlen(name) >= sizeof(d->rem[0].name))
		return NULL;
	struct remote_state *r = &d->rem[d->nrem++];
	memset(r, 0, sizeof(*r));
	snprintf(r->name, sizeof(r->name), "%s", name);
	return r;
}

/* ---- child processes --------------------------------------------- */

void jobs_child_signals(void)
{
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
}

/* Copy src into dst, cut to fit. */
void jobs_copy_str(char *dst, size_t size, const char *src)
{
	if (!size)
		return;
	size_t n = strnlen(src, size - 1);
	memcpy(dst, src, n);
	dst[n] = 0;
}

int jobs_run_child(struct daemon *d, const char *what, char *const argv[],
		   char *out, size_t outsize, char *err, size_t errsize)
{
	int po[2], pe[2];
	if (pipe2(po, O_CLOEXEC))
		return -errno;
	if (pipe2(pe, O_CLOEXEC)) {
		close(po[0]);
		close(po[1]);
		return -errno;
	}
	pid_t pid = fork();
	if (pid < 0) {
		int e = errno;
		close(po[0]); close(po[1]); close(pe[0]); close(pe[1]);
		return -e;
	}
	if (pid == 0) {
		dup2(po[1], STDOUT_FILENO);
		dup2(pe[1], STDERR_FILENO);
		int nul = open("/dev/null", O_RDONLY);
		if (nul >= 0)
			dup2(nul, STDIN_FILENO);
		/* Own process group: a Ctrl-C on the daemon's terminal stops
		 * the daemon, which lets the job finish. */
		setpgid(0, 0);
		jobs_child_signals();
		setenv("TRESOR_DAEMON_CHILD", "1", 1);
		setenv("TRESOR_PROGRESS", "0", 1);
		setenv("TRESOR_LOG_TIME", "0", 1);	/* our relay stamps its lines */
		execv(d->self, argv);
		_exit(127);
	}
	close(po[1]);
	close(pe[1]);
	size_t olen = 0;
	char ebuf[4096];
	size_t elen = 0;
	if (outsize)
		out[0] = 0;
	if (errsize)
		err[0] = 0;
	struct pollfd p[2] = { { .fd = po[0], .events = POLLIN }, { .fd = pe[0], .events = POLLIN } };
	int open_fds = 2;
	while (open_fds) {
		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		for (int i = 0; i < 2; i++) {
			if (p[i].fd < 0 || !(p[i].revents & (POLLIN | POLLHUP | POLLERR)))
				continue;
			char buf[4096];
			ssize_t r = read(p[i].fd, buf, sizeof(buf));
			if (r <= 0) {
				close(p[i].fd);
				p[i].fd = -1;
				open_fds--;
				continue;
			}
			if (i == 0) {
				/* stdout: what fits kept, the rest drained */
				size_t n = (size_t)r;
				if (!outsize)
					continue;
				if (olen + n > outsize - 1)
					n = outsize - 1 - olen;
				memcpy(out + olen, buf, n);
				olen += n;
				out[olen] = 0;
				continue;
			}
			/* stderr: whole lines to our log, the last one kept */
			for (ssize_t k = 0; k < r; k++) {
				if (elen < sizeof(ebuf) - 1)
					ebuf[elen++] = buf[k];
				if (buf[k] != '\n')
					continue;
				ebuf[elen - 1] = 0;
				const char *l = ebuf;
				if (!strncmp(l, "tresor: ", 8))
					l += 8;	/* the child's own prefix */
				if (*l) {
					char stamp[40];
					log_stamp(stamp, sizeof(stamp));
					fprintf(stderr, "%stresor: %s: %s\n", stamp, what, l);
					if (errsize)
						jobs_copy_str(err, errsize, l);
				}
				elen = 0;
			}
		}
	}
	int st;
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	if (elen && errsize) {
		ebuf[elen] = 0;
		jobs_copy_str(err, errsize, ebuf);
	}
	if (WIFEXITED(st))
		return WEXITSTATUS(st);
	return 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
}

void jobs_arg(struct jobs_args *a, const char *s)
{
	if (a->n < 38)
		a->v[a->n++] = (char *)s;
	a->v[a->n] = NULL;
}

void jobs_args_init(struct daemon *d, struct jobs_args *a)
{
	a->n = 0;
	jobs_arg(a, "tresor");
	(void)d;
}

void jobs_args_pass(struct daemon *d, struct jobs_args *a)
{
	if (d->cfg.passphrase_file[0]) {
		jobs_arg(a, "--passphrase-file");
		jobs_arg(a, d->cfg.passphrase_file);
	}
}

/* ---- jobs ----------------------------------------------------------
 *
 * A job's child is read only through what its command documents for
 * scripts: the exit code; the last stderr line, which becomes the job's
 * error; and stdout where it is the result: `snapshot create` prints the
 * snapshot's name, `push --json` its report (handed as it is to the
 * `tresor push` that asked), `check --json` exits 1 with its report when
 * it found problems.  Which snapshots prune removed, the store says.
 */

/* Each job: 0 or a one-line error in err. */
/* One set or volume the snapshot job takes. */
struct target {
	const struct config_set *set;	/* NULL: the volume vi alone */
	int vi;
	const struct config_hooks *hooks;
	struct hook_state *hs;
	char what[80];			/* "set odoo", "volume plans" */
};

/* A hook is ended when the daemon is asked to stop: a SIGTERM must not
 * wait for hook-timeout. */
int jobs_hook_stop(void *arg)
{
	return daemon_stop_requested(arg);
}

/* Run one hook of t (kind "before-snapshot"/"after-snapshot") with the
 * snapshot's environment; 0 or -1 with why. */
static int run_hook(struct daemon *d, const struct target *t, const char *kind,
		    const char *cmd, const char *snap, const char *when,
		    const char *status, char *why, size_t whysize)
{
	char vols[2048] = "", mnts[CONFIG_PATH * 4] = "";
	size_t lv = 0, lm = 0;
	int n = t->set ? t->set->nvol : 1;
	for (int j = 0; j < n; j++) {
		const struct config_volume *v = &d->cfg.vol[t->set ? t->set->vol[j] : t->vi];
		if (lv < sizeof(vols))
			lv += snprintf(vols + lv, sizeof(vols) - lv, "%s%s", j ? " " : "", v->name);
		if (lm < sizeof(mnts))
			lm += snprintf(mnts + lm, sizeof(mnts) - lm, "%s%s", j ? " " : "",
				       v->mountpoint);
	}
	char e[8][CONFIG_PATH * 4 + 32];
	snprintf(e[0], sizeof(e[0]), "TRESOR_HOOK=%s", kind);
	snprintf(e[1], sizeof(e[1]), "TRESOR_STORE=%s", d->cfg.store);
	snprintf(e[2], sizeof(e[2]), "TRESOR_SET=%s", t->set ? t->set->name : "");
	snprintf(e[3], sizeof(e[3]), "TRESOR_VOLUMES=%s", vols);
	snprintf(e[4], sizeof(e[4]), "TRESOR_MOUNTPOINTS=%s", mnts);
	snprintf(e[5], sizeof(e[5]), "TRESOR_SNAPSHOT=%s", snap);
	snprintf(e[6], sizeof(e[6]), "TRESOR_SNAPSHOT_TIME=%s", when);
	snprintf(e[7], sizeof(e[7]), "TRESOR_SNAPSHOT_STATUS=%s", status);
	char *env[] = { e[0], e[1], e[2], e[3], e[4], e[5], e[6], status ? e[7] : NULL, NULL };
	char label[160];
	snprintf(label, sizeof(label), "%s: %s hook", t->what, kind);
	struct hook_result r;
	struct hook_spec hs = { .cmd = cmd, .env = env, .timeout_s = t->hooks->timeout_s,
				.label = label, .stop = jobs_hook_stop, .stop_arg = d };
	tlog(LOG_INFO, "daemon: %s: running %s hook %s", t->what, kind, cmd);
	int err = hook_run(&hs, &r, why, whysize);
	if (err)
		tlog(LOG_ERR, "daemon: %s: %s hook %s", t->what, kind, why);
	return err;
}

/* Note how t's hooks went in its status (error: "" they worked). */
static void hook_noted(struct daemon *d, const struct target *t, const char *error)
{
	pthread_mutex_lock(&d->lock);
	snprintf(t->hs->target, sizeof(t->hs->target), "%s", t->what);
	t->hs->runs++;
	t->hs->last_failed = !!*error;
	if (*error) {
		t->hs->failures++;
		jobs_copy_str(t->hs->last_error, sizeof(t->hs->last_error), error);
	}
	pthread_mutex_unlock(&d->lock);
}

/* Take t's snapshot as a child `snapshot create --scheduled` named run
 * ("": as the store names it; note: its mark); its name into name.  0 or
 * -1 with the child's error. */
static int take_snapshot(struct daemon *d, const struct target *t, const char *when,
			 const char *run, const char *note, char *name, size_t namesize,
			 char *e, size_t esize)
{
	struct jobs_args a;
	jobs_args_init(d, &a);
	jobs_arg(&a, "snapshot");
	jobs_arg(&a, "create");
	jobs_arg(&a, d->cfg.store);
	/* Retention decides when it goes (a person's is pinned). */
	jobs_arg(&a, "--scheduled");
	if (*run) {
		jobs_arg(&a, "--name");
		jobs_arg(&a, run);
	}
	if (t->set) {
		jobs_arg(&a, "--set");
		jobs_arg(&a, t->set->name);
		for (int j = 0; j < t->set->nvol; j++)
			jobs_arg(&a, d->cfg.vol[t->set->vol[j]].name);
	} else {
		jobs_arg(&a, d->cfg.vol[t->vi].name);
	}
	jobs_arg(&a, "--time");
	jobs_arg(&a, when);
	if (*note) {
		jobs_arg(&a, "--note");
		jobs_arg(&a, note);
	}
	int rc = jobs_run_child(d, "snapshot", a.v, name, namesize, e, esize);
	name[strcspn(name, "\n")] = 0;
	return rc ? -1 : 0;
}

/* How a target's snapshot went besides its result. */
enum { TAKEN, SKIPPED, MARKED };

/* One target: before hook, snapshot (skipped when the hook failed,
 * unless snapshot-on-hook-failure), after hook.  0, or -1 with err;
 * *how: TAKEN, SKIPPED (the before hook failed) or MARKED (taken anyway). */
static int snapshot_target(struct daemon *d, const struct target *t, time_t now,
			   const char *run, char *err, size_t errsize, int *how)
{
	*how = TAKEN;
	char when[64], why[512] = "", hookerr[600] = "", note[600] = "";
	cli_iso_time(now, when, sizeof(when));
	const struct config_hooks *h = t->hooks;
	int failed = 0, skipped = 0;
	if (h->before[0] && run_hook(d, t, "before-snapshot", h->before, run, when, NULL,
				     why, sizeof(why))) {
		snprintf(hookerr, sizeof(hookerr), "before-snapshot hook %s", why);
		if (h->take_anyway) {
			*how = MARKED;
			snprintf(note, sizeof(note), "before-snapshot hook %s", why);
			tlog(LOG_WARN, "daemon: %s: taking the snapshot anyway (snapshot-on-hook-failure), marked",
			     t->what);
		} else {
			skipped = failed = 1;
			*how = SKIPPED;
			snprintf(err, errsize, "%s: before-snapshot hook %s; snapshot skipped",
				 t->what, why);
		}
	}
	char name[256] = "", e[400] = "";
	if (!skipped && take_snapshot(d, t, when, run, note, name, sizeof(name), e, sizeof(e))) {
		failed = 1;
		snprintf(err, errsize, "snapshot of %s: %s", t->what, *e ? e : "failed");
	} else if (!skipped) {
		tlog(LOG_INFO, "daemon: %s: snapshot %s%s", t->what, name,
		     *note ? " (marked: before-snapshot hook failed)" : "");
	}
	if (h->after[0] && run_hook(d, t, "after-snapshot", h->after, *name ? name : run,
				    when, skipped ? "skipped" : failed ? "failed" : "ok",
				    why, sizeof(why)) && !*hookerr)
		snprintf(hookerr, sizeof(hookerr), "after-snapshot hook %s", why);
	if (h->before[0] || h->after[0])
		hook_noted(d, t, hookerr);
	return failed ? -1 : 0;
}

/* Target i: set i (< nset), else volume i - nset. */
static void target_init(struct daemon *d, int i, struct target *t)
{
	*t = (struct target){ .set = i < d->cfg.nset ? &d->cfg.set[i] : NULL,
			      .vi = i - d->cfg.nset, .hs = &d->hook[i] };
	t->hooks = t->set ? &t->set->hooks : &d->cfg.vol[t->vi].hooks;
	snprintf(t->what, sizeof(t->what), "%s %s", t->set ? "set" : "volume",
		 t->set ? t->set->name : d->cfg.vol[t->vi].name);
}

/* Note in set i's status how its run went (lock not held). */
static void set_noted(struct daemon *d, int i, int rc, int how, time_t end,
		      const char *err)
{
	struct set_job *s = &d->set_job[i];
	pthread_mutex_lock(&d->lock);
	s->runs++;
	s->last_run = end;
	s->last_failed = rc != 0;
	s->last_skipped = how == SKIPPED;
	s->last_marked = how == MARKED && !rc;
	if (!rc) {
		s->last_ok = end;
	} else {
		s->failures++;
		jobs_copy_str(s->last_error, sizeof(s->last_error), err);
	}
	pthread_mutex_unlock(&d->lock);
}

/* Whether target i is the snapshot job's: a set on its schedule, or a
 * volume in no set (-1 for the job: any of them; else only target i). */
static int run_takes(struct daemon *d, int only, int i)
{
	if (only >= 0)
		return i == only;
	struct target t;
	target_init(d, i, &t);
	return !((!t.set && config_set_of(&d->cfg, t.vi) >= 0) ||
		 (t.set && t.set->own_schedule));
}

/* The one name the run at now gives every volume it takes (targets as
 * run_takes(only) says), daemon_snapshot_name's; "" if the store cannot
 * be read: each snapshot is then named by itself. */
static void run_name(struct daemon *d, int only, time_t now, char *name, size_t size)
{
	const char *vols[CONFIG_MAX_VOLUMES];
	size_t n = 0;
	for (int i = 0; i < d->cfg.nset + d->cfg.nvol; i++) {
		struct target t;
		target_init(d, i, &t);
		for (int j = 0; run_takes(d, only, i) && j < (t.set ? t.set->nvol : 1); j++)
			if (n < CONFIG_MAX_VOLUMES)
				vols[n++] = d->cfg.vol[t.set ? t.set->vol[j] : t.vi].name;
	}
	int err = daemon_snapshot_name(d, vols, n, now, name, size);
	if (err)
		tlog(LOG_WARN, "daemon: cannot choose one name for this run's snapshots (%s); each is named by itself",
		     strerror(-err));
}

static int job_snapshot(struct daemon *d, time_t now, char *err, size_t errsize)
{
	int failed = 0;
	char run[128];
	run_name(d, -1, now, run, sizeof(run));
	/* Each set at one instant (those of this schedule), then each volume
	 * in no set by itself; all under one name. */
	for (int i = 0; i < d->cfg.nset + d->cfg.nvol; i++) {
		if (!run_takes(d, -1, i))
			continue;
		struct target t;
		target_init(d, i, &t);
		char e[600] = "";
		int how, rc = snapshot_target(d, &t, now, run, e, sizeof(e), &how);
		if (t.set)	/* sets[] says how each went, not only the job */
			set_noted(d, i, rc, how, daemon_now(), e);
		if (rc) {
			if (!failed)
				jobs_copy_str(err, errsize, e);
			failed = 1;
		}
	}
	return failed ? -1 : 0;
}

/* Log the snapshots prune removed, by name: the log is where one looks
 * for where a snapshot went.  The store says which (those listed before
 * that are gone now), not prune's output. */
static void prune_log(struct daemon *d, const char *vol, int before_err,
		      const struct snapshot_info *before, size_t nb)
{
	struct index *ix = daemon_index(d);
	struct snapshot_info *after = NULL;
	size_t na = 0;
	int err = before_err ? before_err : !ix ? -EIO : daemon_snapshots(ix, vol, &after, &na);
	if (ix)
		index_close(ix);
	if (err) {
		tlog(LOG_WARN, "daemon: volume %s: prune done; its snapshots cannot be listed: %s",
		     vol, strerror(-err));
		return;
	}
	char names[900] = "";
	size_t len = 0;
	int n = 0;
	for (size_t i = 0; i < nb; i++) {
		size_t k = 0;
		while (k < na && after[k].id != before[i].id)
			k++;
		if (k < na)
			continue;
		if (len < sizeof(names) - 1)
			len += snprintf(names + len, sizeof(names) - len, "%s%s", n ? ", " : "",
					before[i].name);
		n++;
	}
	free(after);
	if (len >= sizeof(names) - 1)
		snprintf(names + sizeof(names) - 5, 5, "...");
	if (n)
		tlog(LOG_INFO, "daemon: volume %s: prune removed %d snapshot(s): %s", vol, n, names);
	else
		tlog(LOG_INFO, "daemon: volume %s: prune removed no snapshot", vol);
}

/* Append prune's --keep-* options for policy k to a (bufs: their text). */
static void keep_args(struct jobs_args *a, const struct retention_policy *k,
		      char nums[7][32])
{
	const char *flags[6] = { "--keep-last", "--keep-hourly", "--keep-daily",
				 "--keep-weekly", "--keep-monthly", "--keep-yearly" };
	const int vals[6] = { k->last, k->hourly, k->daily, k->weekly, k->monthly, k->yearly };
	for (int j = 0; j < 6; j++) {
		if (!vals[j])
			continue;
		snprintf(nums[j], 32, "%d", vals[j]);
		jobs_arg(a, flags[j]);
		jobs_arg(a, nums[j]);
	}
	if (k->within_ns) {
		/* whole hours: what retention_parse_duration reads back */
		snprintf(nums[6], 32, "%lldh", (long long)(k->within_ns / 3600000000000LL));
		jobs_arg(a, "--keep-within");
		jobs_arg(a, nums[6]);
	}
}

/* Log which set snapshots prune removed: its "remove NAME ..." lines
 * (each with every member). */
static void prune_set_log(const char *name, char *out)
{
	char names[900] = "";
	size_t len = 0;
	int n = 0;
	for (char *l = out; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
		if (strncmp(l, "remove ", 7))
			continue;
		size_t w = strcspn(l + 7, " \n");
		if (len + w + 3 < sizeof(names))
			len += snprintf(names + len, sizeof(names) - len, "%s%.*s",
					n ? ", " : "", (int)w, l + 7);
		n++;
	}
	tlog(LOG_INFO, "daemon: set %s: prune removed %d snapshot(s) of every member%s%s",
	     name, n, n ? ": " : "", names);
}

/* Prune one volume (vi; its snapshots outside any set) or one set.  0 or
 * -1 with err. */
static int prune_target(struct daemon *d, const struct config_set *set, int vi,
			char *err, size_t errsize)
{
	const char *name = set ? set->name : d->cfg.vol[vi].name;
	struct snapshot_info *before = NULL;
	size_t nb = 0;
	int berr = 0;
	if (!set) {
		struct index *ix = daemon_index(d);
		berr = !ix ? -EIO : daemon_snapshots(ix, name, &before, &nb);
		if (ix)
			index_close(ix);
	}
	struct jobs_args a;
	char nums[7][32];
	jobs_args_init(d, &a);
	jobs_arg(&a, "prune");
	jobs_arg(&a, d->cfg.store);
	if (set)
		jobs_arg(&a, "--set");
	jobs_arg(&a, name);
	keep_args(&a, set ? &set->keep : &d->cfg.keep, nums);
	jobs_args_pass(d, &a);
	char out[4096], e[400];
	int rc = jobs_run_child(d, "prune", a.v, out, sizeof(out), e, sizeof(e));
	if (rc)
		snprintf(err, errsize, "prune of %s %s: %s", set ? "set" : "volume", name,
			 *e ? e : "failed");
	else if (set)
		prune_set_log(name, out);
	else
		prune_log(d, name, berr, before, nb);
	free(before);
	return rc ? -1 : 0;
}

/* Prune each volume (its snapshots outside any set), then each set that
 * runs on the snapshot job's schedule, as one. */
static int job_prune(struct daemon *d, time_t now, char *err, size_t errsize)
{
	(void)now;
	int failed = 0;
	for (int i = 0; i < d->cfg.nvol + d->cfg.nset; i++) {
		const struct config_set *set = i >= d->cfg.nvol ? &d->cfg.set[i - d->cfg.nvol] : NULL;
		if (set && set->own_schedule)
			continue;
		char e[600];
		if (prune_target(d, set, i, e, sizeof(e))) {
			if (!failed)
				jobs_copy_str(err, errsize, e);
			failed = 1;
		}
	}
	return failed ? -1 : 0;
}

/* Note the push of req in its remote's state, and schedule its retry
 * (doubling backoff) as the log line says. */
static void push_noted(struct daemon *d, const struct push_req *req, int rc, const char *e)
{
	time_t now = daemon_now();
	/* A name the store has no remote for (a mistyped `tresor push`)
	 * has no health to keep and nothing to retry. */
	struct index *ix = daemon_index(d);
	struct remote_cfg known;
	int unknown = ix && remote_cfg_find(ix, req->name, &known) == -ENOENT;
	if (ix)
		index_close(ix);
	if (unknown)
		return;
	pthread_mutex_lock(&d->lock);
	struct remote_state *r = jobs_remote_state(d, req->name);
	if (!r) {
		pthread_mutex_unlock(&d->lock);
		tlog(LOG_WARN, "daemon: push to %s: more than %d remotes; its health is not kept",
		     req->name, DAEMON_MAX_REMOTES);
		return;
	}
	r->last_run = now;
	if (!rc) {
		r->last_ok = now;
		r->last_failed = 0;
		r->attempts = 0;
		r->last_error[0] = 0;
		pthread_mutex_unlock(&d->lock);
		return;
	}
	r->failures++;
	r->last_failed = 1;
	snprintf(r->last_error, sizeof(r->last_error), "%s", e);
	r->attempts++;
	if (r->attempts > d->cfg.retries) {
		tlog(LOG_ERR, "daemon: push to %s failed %d time(s), giving up until the next push: %s",
		     r->name, r->attempts, e);
		r->attempts = 0;
	} else {
		int64_t delay = d->cfg.retry_delay_s << (r->attempts - 1 < 20 ? r->attempts - 1 : 20);
		r->next_retry = now + delay;
		r->retry = *req;
		tlog(LOG_WARN, "daemon: push to %s failed (attempt %d of %d), retrying in %llds: %s",
		     r->name, r->attempts, d->cfg.retries + 1, (long long)delay, e);
	}
	pthread_mutex_unlock(&d->lock);
}

/* The remotes to push to: those a `tresor push` asked for, else those of
 * the config, else every one configured in the store.  Each push runs in
 * a child process of its own: a crash or hang of one is isolated. */
static int job_push(struct daemon *d, time_t now, char *err, size_t errsize)
{
	(void)now;
	struct push_req reqs[CONFIG_MAX_REMOTES * 2];
	memset(reqs, 0, sizeof(reqs));
	int n = 0;
	for (int i = 0; i < d->npush_only; i++)
		reqs[n++] = d->push_only[i];
	for (int i = 0; i < d->cfg.nrem && !d->npush_only; i++)
		snprintf(reqs[n++].name, sizeof(reqs[0].name), "%s", d->cfg.rem[i].name);
	if (!n) {
		struct index *ix = daemon_index(d);
		struct remote_cfg *cs = NULL;
		size_t nc = 0;
		int lerr = ix ? remote_cfg_list(ix, &cs, &nc) : -EIO;
		index_close(ix);
		if (lerr) {
			snprintf(err, errsize, "cannot list the remotes of %s: %s", d->cfg.store,
				 strerror(-lerr));
			return -1;
		}
		for (size_t i = 0; i < nc && n < CONFIG_MAX_REMOTES * 2; i++)
			snprintf(reqs[n++].name, sizeof(reqs[0].name), "%s", cs[i].name);
		free(cs);
	}
	int failed = 0;
	char json[1024] = "";
	for (int i = 0; i < n; i++) {
		struct jobs_args a;
		jobs_args_init(d, &a);
		jobs_arg(&a, "push");
		jobs_arg(&a, d->cfg.store);
		jobs_arg(&a, reqs[i].name);
		jobs_arg(&a, "--json");
		/* What the request asked for, else the config's. */
		char jobs[16];
		snprintf(jobs, sizeof(jobs), "%d", d->cfg.push_jobs);
		const char *j = reqs[i].jobs[0] ? reqs[i].jobs : d->cfg.push_jobs ? jobs : NULL;
		const char *lim = reqs[i].limit_upload[0] ? reqs[i].limit_upload :
				  d->cfg.push_limit_upload[0] ? d->cfg.push_limit_upload : NULL;
		if (j) {
			jobs_arg(&a, "--jobs");
			jobs_arg(&a, j);
		}
		if (lim) {
			jobs_arg(&a, "--limit-upload");
			jobs_arg(&a, lim);
		}
		if (reqs[i].grace[0]) {
			jobs_arg(&a, "--grace");
			jobs_arg(&a, reqs[i].grace);
		}
		/* The image policy (FORMAT.md §15.5): the request's, else the
		 * config's, else push's own default. */
		char every[16];
		snprintf(every, sizeof(every), "%s", reqs[i].image_every);
		if (!every[0] && d->cfg.push_image_every >= 0)
			snprintf(every, sizeof(every), "%d", d->cfg.push_image_every);
		if (every[0]) {
			jobs_arg(&a, "--image-every");
			jobs_arg(&a, every);
		}
		jobs_args_pass(d, &a);
		tlog(LOG_INFO, "daemon: push to %s%s%s%s%s%s%s", reqs[i].name,
		     j ? " --jobs " : "", j ? j : "", lim ? " --limit-upload " : "",
		     lim ? lim : "", every[0] ? " --image-every " : "", every);
		char out[1024], e[400];
		int rc = jobs_run_child(d, "push", a.v, out, sizeof(out), e, sizeof(e));
		if (rc) {
			if (!failed)
				snprintf(err, errsize, "push to %s: %s", reqs[i].name,
					 *e ? e : "failed");
			failed = 1;
		} else {
			out[strcspn(out, "\n")] = 0;
			snprintf(json, sizeof(json), "%s", out);
		}
		push_noted(d, &reqs[i], rc, *e ? e : "failed");
	}
	pthread_mutex_lock(&d->lock);
	snprintf(d->push_json, sizeof(d->push_json), "%s", json);
	pthread_mutex_unlock(&d->lock);
	return failed ? -1 : 0;
}

typedef int (*job_fn)(struct daemon *, time_t, char *, size_t);
static const job_fn job_fns[JOB_COUNT] = { job_snapshot, job_prune, job_push, check_job };

/* The push job's attempts and next retry, for status: the longest
 * retry series of its remotes and the soonest retry (lock held). */
static void push_retry_summary(struct daemon *d)
{
	struct job_state *s = &d->job[JOB_PUSH];
	s->attempts = 0;
	for (int i = 0; i < d->nrem; i++) {
		const struct remote_state *r = &d->rem[i];
		if (!r->attempts)
			continue;
		if (!s->attempts || r->next_retry < s->next_retry)
			s->next_retry = r->next_retry;
		if (r->attempts > s->attempts)
			s->attempts = r->attempts;
	}
}

/* After a failed attempt (lock held): its retry after retry-delay,
 * doubled each time, or, past `retries`, the slot given up. */
static void retry_later(struct daemon *d, const char *what, int *attempts, time_t *next_retry,
			time_t *last_slot, time_t slot, time_t end, const char *err)
{
	if (++*attempts > d->cfg.retries) {
		tlog(LOG_ERR, "daemon: %s failed %d time(s), giving up until its next run: %s",
		     what, *attempts, err);
		*attempts = 0;
		*last_slot = slot;
	} else {
		int64_t delay = d->cfg.retry_delay_s << (*attempts - 1 < 20 ? *attempts - 1 : 20);
		*next_retry = end + delay;
		tlog(LOG_WARN, "daemon: %s failed (attempt %d of %d), retrying in %llds: %s",
		     what, *attempts, d->cfg.retries + 1, (long long)delay, err);
	}
}

/* Run job j for slot; note the result (and its retry) in the state. */
static int run_job(struct daemon *d, enum job_kind j, time_t slot)
{
	struct job_state *s = &d->job[j];
	time_t start = daemon_now();
	pthread_mutex_lock(&d->lock);
	s->running = 1;
	pthread_mutex_unlock(&d->lock);
	tlog(LOG_INFO, "daemon: %s: starting", job_names[j]);
	char err[400] = "";
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	int rc = job_fns[j](d, start, err, sizeof(err));
	clock_gettime(CLOCK_MONOTONIC, &t1);
	time_t end = daemon_now();
	pthread_mutex_lock(&d->lock);
	s->running = 0;
	s->last_duration = (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
	s->runs++;
	s->last_run = end;
	struct history *h = &d->hist[d->nhist % HISTORY_MAX];
	*h = (struct history){ .job = j, .slot = slot, .start = start, .end = end, .ok = !rc };
	d->nhist++;
	if (!rc) {
		s->last_ok = end;
		s->last_failed = 0;
		s->attempts = 0;
		s->last_slot = slot;
		tlog(LOG_INFO, "daemon: %s: done", job_names[j]);
	} else if (j == JOB_PUSH) {
		/* The slot is handled: each failed remote is retried by
		 * itself (push_noted said when). */
		s->failures++;
		s->last_failed = 1;
		snprintf(s->last_error, sizeof(s->last_error), "%s", err);
		s->last_slot = slot;
		tlog(LOG_WARN, "daemon: push: failed: %s", err);
	} else {
		s->failures++;
		s->last_failed = 1;
		snprintf(s->last_error, sizeof(s->last_error), "%s", err);
		retry_later(d, job_names[j], &s->attempts, &s->next_retry, &s->last_slot, slot,
			    end, err);
	}
	if (j == JOB_PUSH)
		push_retry_summary(d);
	daemon_state_save(d);
	pthread_mutex_unlock(&d->lock);
	if (d->cfg.metrics_textfile[0])
		metrics_write_textfile(d);
	return rc;
}

/* The slot of j due now, or 0. */
static time_t due(struct daemon *d, enum job_kind j, const struct schedule *sc, time_t now)
{
	time_t slot = schedule_latest(sc, now);
	struct job_state *s = &d->job[j];
	if (!slot || slot <= s->last_slot)
		return 0;
	/* (push retries go remote by remote: push_retries) */
	if (j != JOB_PUSH && s->attempts && now < s->next_retry)
		return 0;
	return slot;
}

/* Pushes that failed and are due for their retry, each remote with the
 * request that failed (a scheduled push or one `tresor push` asked for). */
static void push_retries(struct daemon *d)
{
	time_t now = daemon_now();
	int n = 0;
	pthread_mutex_lock(&d->lock);
	for (int i = 0; i < d->nrem; i++)
		if (d->rem[i].attempts && now >= d->rem[i].next_retry)
			d->push_only[n++] = d->rem[i].retry;
	pthread_mutex_unlock(&d->lock);
	if (!n)
		return;
	d->npush_only = n;
	run_job(d, JOB_PUSH, d->job[JOB_PUSH].last_slot);
	d->npush_only = 0;
}

/* Each set with a schedule of its own whose slot (or retry) is due: its
 * snapshot, then its prune; the result noted as a job's is. */
static void sets_run_due(struct daemon *d)
{
	for (int i = 0; i < d->cfg.nset && !daemon_stop_requested(d); i++) {
		const struct config_set *cs = &d->cfg.set[i];
		struct set_job *s = &d->set_job[i];
		time_t now = daemon_now();
		time_t slot = cs->own_schedule ? schedule_latest(&cs->snapshot, now) : 0;
		if (!slot || slot <= s->last_slot || (s->attempts && now < s->next_retry))
			continue;
		struct target t;
		target_init(d, i, &t);
		tlog(LOG_INFO, "daemon: %s: starting (its own schedule)", t.what);
		char err[600] = "", run[128];
		run_name(d, i, now, run, sizeof(run));
		int how, rc = snapshot_target(d, &t, now, run, err, sizeof(err), &how);
		if (!rc && !daemon_stop_requested(d))
			rc = prune_target(d, cs, 0, err, sizeof(err));
		time_t end = daemon_now();
		set_noted(d, i, rc, how, end, err);
		pthread_mutex_lock(&d->lock);
		if (!rc) {
			s->attempts = 0;
			s->last_slot = slot;
			tlog(LOG_INFO, "daemon: %s: done", t.what);
		} else {
			retry_later(d, t.what, &s->attempts, &s->next_retry, &s->last_slot, slot,
				    end, err);
		}
		daemon_state_save(d);
		pthread_mutex_unlock(&d->lock);
	}
}

/* One pass: every due job, in order snapshot, prune, push, check. */
void jobs_run_due(struct daemon *d)
{
	time_t now = daemon_now();
	time_t slot = due(d, JOB_SNAPSHOT, &d->cfg.snapshot, now);
	if (slot && !daemon_stop_requested(d)) {
		int rc = run_job(d, JOB_SNAPSHOT, slot);
		/* Prune follows each snapshot run that worked. */
		if (!rc && !daemon_stop_requested(d))
			run_job(d, JOB_PRUNE, slot);
	} else if (!slot && d->job[JOB_PRUNE].attempts && !daemon_stop_requested(d) &&
		   now >= d->job[JOB_PRUNE].next_retry) {
		run_job(d, JOB_PRUNE, d->job[JOB_PRUNE].last_slot);
	}
	sets_run_due(d);
	slot = due(d, JOB_PUSH, &d->cfg.push, daemon_now());
	if (slot && !daemon_stop_requested(d))
		run_job(d, JOB_PUSH, slot);
	/* Pushes asked for by `tresor push`: counted as runs of the job,
	 * but not as a schedule slot. */
	pthread_mutex_lock(&d->lock);
	d->npush_only = d->npush_want;
	memcpy(d->push_only, d->push_want, sizeof(d->push_want));
	d->npush_want = 0;
	pthread_mutex_unlock(&d->lock);
	if (d->npush_only && !daemon_stop_requested(d)) {
		int rc = run_job(d, JOB_PUSH, d->job[JOB_PUSH].last_slot);
		d->npush_only = 0;
		pthread_mutex_lock(&d->lock);
		d->push_result = rc;
		d->push_generation++;
		pthread_cond_broadcast(&d->cond);
		pthread_mutex_unlock(&d->lock);
	}
	if (!daemon_stop_requested(d))
		push_retries(d);
	slot = due(d, JOB_CHECK, &d->cfg.check, daemon_now());
	if (slot && !daemon_stop_requested(d))
		run_job(d, JOB_CHECK, slot);
}
