/*
 * daemon_reload.c - a running daemon takes a changed config without a
 * restart.  On SIGHUP (`tresor daemon reload [CONFIG]` sends it and waits
 * for the result) the job thread, between jobs, reads its config file
 * again, makes every check the start makes (daemon_config_check: the one
 * piece of code for the start, the dry run and the reload) and applies it
 * at once: schedules, retention, hooks, snapshot sets, remotes, options.
 *
 * A volume whose mount point and mount options did not change keeps its
 * mount process: its mount never goes away, so a bind mount of it (a
 * container's volume) never sees "Transport endpoint is not connected".
 * A volume added is mounted, one removed is unmounted as a stop does, one
 * whose mount settings changed is remounted.  A file that fails a check,
 * or changes what only a restart can change (the store, the state file,
 * metrics-listen), is refused: the daemon runs on with the config it has
 * and says why in one line, in its log and to `tresor daemon reload`
 * (through the state file: reload.generation, .ok, .message).
 */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../chunker/util.h"
#include "cli.h"
#include "daemon.h"

/* How long `tresor daemon reload` waits: the reload comes after the job
 * that runs, and a push of a large change may take a while. */
#define RELOAD_WAIT_S 300

/* reload.ok in the state file */
enum { RELOAD_REFUSED = 0, RELOAD_DONE = 1, RELOAD_DONE_NOT_MOUNTED = 2 };

static void __attribute__((format(printf, 3, 4)))
add(char *buf, size_t size, const char *fmt, ...)
{
	size_t len = strlen(buf);
	if (len >= size - 1)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf + len, size - len, fmt, ap);
	va_end(ap);
}

static int vol_index(const struct config *c, const char *name)
{
	for (int i = 0; i < c->nvol; i++)
		if (!strcmp(c->vol[i].name, name))
			return i;
	return -1;
}

static int set_index(const struct config *c, const char *name)
{
	for (int i = 0; i < c->nset; i++)
		if (!strcmp(c->set[i].name, name))
			return i;
	return -1;
}

/* "FILE:LINE" of a key, or "FILE" when the key is not in the file. */
static void where(char *buf, size_t size, const char *file, int line)
{
	if (line)
		snprintf(buf, size, "%s:%d", file, line);
	else
		snprintf(buf, size, "%s", file);
}

/* What the daemon holds and a reload cannot move: the store (its control
 * socket, its mounts), the state file (its lock) and the metrics address
 * (a listening socket).  0, or -1 with why in err. */
static int fixed_check(struct daemon *d, const struct config *nc, char *err, size_t size)
{
	char real[PATH_MAX], at[CONFIG_PATH + 16];
	/* the store is compared by its real path: "/srv/tresor/" is it too */
	const char *now = realpath(nc->store, real) ? real : nc->store;
	const struct {
		const char *key, *is, *was, *shown, *what;
		int line;
	} fixed[] = {
		{ "store", now, d->store_real, d->cfg.store, "another store", nc->store_line },
		{ "state-file", nc->state_file, d->cfg.state_file, d->cfg.state_file,
		  "another state file", nc->state_file_line },
		{ "metrics-listen", nc->metrics_listen, d->cfg.metrics_listen,
		  d->cfg.metrics_listen, "another metrics address", nc->metrics_listen_line },
	};
	for (size_t k = 0; k < sizeof(fixed) / sizeof(fixed[0]); k++) {
		if (!strcmp(fixed[k].is, fixed[k].was))
			continue;
		where(at, sizeof(at), d->cfg_path, fixed[k].line);
		err[0] = 0;
		add(err, size, "%s: %s '%s': the daemon runs with '%s'; %s needs a restart of the daemon; the old config stays",
		    at, fixed[k].key, k ? fixed[k].is : nc->store, fixed[k].shown, fixed[k].what);
		return -1;
	}
	return 0;
}

/* Hooks, sets and remotes compared without the lines they are on: a
 * comment added above them is no change. */
static void hooks_unlined(struct config_hooks *h)
{
	h->line = 0;
}

static int sets_differ(const struct config *a, const struct config *b)
{
	if (a->nset != b->nset)
		return 1;
	for (int i = 0; i < a->nset; i++) {
		struct config_set x = a->set[i], y = b->set[i];
		x.line = y.line = x.vol_line = y.vol_line = 0;
		hooks_unlined(&x.hooks);
		hooks_unlined(&y.hooks);
		if (memcmp(&x, &y, sizeof(x)))
			return 1;
	}
	return 0;
}

static int volume_hooks_differ(const struct config *a, const struct config *b)
{
	for (int i = 0; i < b->nvol; i++) {
		int o = vol_index(a, b->vol[i].name);
		if (o < 0)
			continue;	/* a volume added: said as such */
		struct config_hooks x = a->vol[o].hooks, y = b->vol[i].hooks;
		hooks_unlined(&x);
		hooks_unlined(&y);
		if (memcmp(&x, &y, sizeof(x)))
			return 1;
	}
	return 0;
}

static int remotes_differ(const struct config *a, const struct config *b)
{
	if (a->nrem != b->nrem)
		return 1;
	for (int i = 0; i < a->nrem; i++) {
		struct config_remote x = a->rem[i], y = b->rem[i];
		x.line = y.line = 0;
		if (memcmp(&x, &y, sizeof(x)))
			return 1;
	}
	return 0;
}

/* What changed besides the volumes, for the log: "schedule, retention". */
static void changes(const struct config *a, const struct config *b, char *buf, size_t size)
{
	int sched = memcmp(&a->snapshot, &b->snapshot, sizeof(a->snapshot)) ||
		    memcmp(&a->push, &b->push, sizeof(a->push)) ||
		    memcmp(&a->check, &b->check, sizeof(a->check)) ||
		    a->check_read_data != b->check_read_data || a->push_jobs != b->push_jobs ||
		    strcmp(a->push_limit_upload, b->push_limit_upload) ||
		    a->push_image_every != b->push_image_every;
	int opts = strcmp(a->passphrase_file, b->passphrase_file) ||
		   strcmp(a->metrics_textfile, b->metrics_textfile) ||
		   a->stale_push_s != b->stale_push_s || a->retries != b->retries ||
		   a->retry_delay_s != b->retry_delay_s;
	const char *what[] = { "schedule", "retention", "snapshot sets", "hooks", "remotes",
			       "options" };
	int on[] = { sched, memcmp(&a->keep, &b->keep, sizeof(a->keep)) != 0, sets_differ(a, b),
		     volume_hooks_differ(a, b), remotes_differ(a, b), opts };
	buf[0] = 0;
	for (int k = 0; k < 6; k++)
		if (on[k])
			add(buf, size, "%s%s", buf[0] ? ", " : "", what[k]);
}

/* A schedule that changed starts from now, as a first start does: the
 * new one's latest slot counts as handled (no catch-up of a slot it
 * would have had before it existed). */
static void schedule_from_now(time_t *last_slot, const struct schedule *a,
			      const struct schedule *b, time_t now)
{
	if (a && !memcmp(a, b, sizeof(*a)))
		return;
	time_t latest = schedule_latest(b, now);
	if (*last_slot < latest)
		*last_slot = latest;
}

/* Target k of d->hook for config c: set k, else volume k - nset. */
static void hook_target(const struct config *c, int k, char *buf, size_t size)
{
	if (k < c->nset)
		snprintf(buf, size, "set %s", c->set[k].name);
	else
		snprintf(buf, size, "volume %s", c->vol[k - c->nset].name);
}

/* The state kept per volume, set and hooked target moves to the new
 * config's indexes by name; the schedules that changed start from now;
 * then nc becomes the config.  (stats_lock and lock held) */
static void state_carry(struct daemon *d, const struct config *nc, const int *keep)
{
	struct mount_child mc[CONFIG_MAX_VOLUMES];
	struct set_job sj[CONFIG_MAX_SETS];
	struct hook_state hk[DAEMON_MAX_HOOKED];
	double logical[CONFIG_MAX_VOLUMES] = { 0 };
	const struct config *oc = &d->cfg;
	time_t now = daemon_now();
	memset(mc, 0, sizeof(mc));
	memset(sj, 0, sizeof(sj));
	memset(hk, 0, sizeof(hk));
	for (int i = 0; i < nc->nvol; i++) {
		int o = vol_index(oc, nc->vol[i].name);
		if (keep[i] >= 0)
			mc[i] = d->mc[keep[i]];
		if (o >= 0)
			logical[i] = d->vol_logical[o];
	}
	for (int i = 0; i < nc->nset; i++) {
		int o = set_index(oc, nc->set[i].name);
		if (o >= 0)
			sj[i] = d->set_job[o];
		sj[i].slot_known = 1;
		schedule_from_now(&sj[i].last_slot, o >= 0 ? &oc->set[o].snapshot : NULL,
				  &nc->set[i].snapshot, now);
	}
	for (int k = 0; k < nc->nset + nc->nvol && k < DAEMON_MAX_HOOKED; k++) {
		char t[80], u[80];
		hook_target(nc, k, t, sizeof(t));
		for (int j = 0; j < oc->nset + oc->nvol && j < DAEMON_MAX_HOOKED; j++) {
			hook_target(oc, j, u, sizeof(u));
			if (!strcmp(t, u))
				hk[k] = d->hook[j];
		}
	}
	schedule_from_now(&d->job[JOB_SNAPSHOT].last_slot, &oc->snapshot, &nc->snapshot, now);
	schedule_from_now(&d->job[JOB_PUSH].last_slot, &oc->push, &nc->push, now);
	schedule_from_now(&d->job[JOB_CHECK].last_slot, &oc->check, &nc->check, now);
	/* A remote the config no longer names is not pushed to by schedule
	 * (unless it names none: then every remote of the store is); its
	 * health stays, its pending retry goes.  Remotes that stay keep
	 * everything. */
	for (int r = 0; r < d->nrem && nc->nrem; r++) {
		int named = 0;
		for (int k = 0; k < nc->nrem; k++)
			named |= !strcmp(nc->rem[k].name, d->rem[r].name);
		if (!named && d->rem[r].attempts) {
			tlog(LOG_INFO, "daemon: remote %s is no longer in the config: its push retry is dropped",
			     d->rem[r].name);
			d->rem[r].attempts = 0;
		}
	}
	d->cfg = *nc;
	memcpy(d->mc, mc, sizeof(mc));
	memcpy(d->set_job, sj, sizeof(sj));
	memcpy(d->hook, hk, sizeof(hk));
	memcpy(d->vol_logical, logical, sizeof(logical));
}

/* Apply the checked config nc; the summary in msg.  Returns reload.ok. */
static int reload_apply(struct daemon *d, const struct config *nc, char *msg, size_t size)
{
	const struct config *oc = &d->cfg;
	int keep[CONFIG_MAX_VOLUMES], stays[CONFIG_MAX_VOLUMES] = { 0 }, nkept = 0;
	int fresh[CONFIG_MAX_VOLUMES];	/* not in the old config */
	char what[200];
	changes(oc, nc, what, sizeof(what));
	for (int i = 0; i < nc->nvol; i++) {
		int o = vol_index(oc, nc->vol[i].name);
		fresh[i] = o < 0;
		keep[i] = o >= 0 && !strcmp(oc->vol[o].mountpoint, nc->vol[i].mountpoint) &&
			  !strcmp(oc->vol[o].options, nc->vol[i].options) ? o : -1;
		if (keep[i] >= 0) {
			stays[o] = 1;
			nkept++;
		}
	}
	snprintf(msg, size, "reloaded %s: %d volume(s) stay mounted", d->cfg_path, nkept);
	/* First the mounts that go (a mount point may pass to a volume
	 * that comes), all asked at once, as a stop does. */
	char gone[400] = "", again[400] = "";
	for (int o = 0; o < oc->nvol; o++) {
		if (stays[o])
			continue;
		int moved = vol_index(nc, oc->vol[o].name) >= 0;
		add(moved ? again : gone, 400, "%s%s", *(moved ? again : gone) ? ", " : "",
		    oc->vol[o].name);
		tlog(LOG_INFO, "daemon: volume %s: %s", oc->vol[o].name,
		     moved ? "its mountpoint or options changed: restarting its mount process" :
			     "no longer in the config: unmounting it");
		if (d->mc[o].pid)
			kill(d->mc[o].pid, SIGTERM);
	}
	for (int o = 0; o < oc->nvol; o++)
		if (!stays[o])
			daemon_mount_reap(d, o);
	/* From here on d->cfg (oc) is the new config. */
	pthread_mutex_lock(&d->stats_lock);
	pthread_mutex_lock(&d->lock);
	state_carry(d, nc, keep);
	char added[400] = "";
	for (int i = 0; i < d->cfg.nvol; i++)
		if (keep[i] < 0) {
			if (fresh[i])
				add(added, sizeof(added), "%s%s", added[0] ? ", " : "",
				    d->cfg.vol[i].name);
			daemon_mount_start(d, i);
		}
	pthread_mutex_unlock(&d->lock);
	pthread_mutex_unlock(&d->stats_lock);
	/* The new mounts: up to 60 s, until each is mounted or its process
	 * ended once (then the supervision restarts it with backoff). */
	for (int t = 0; t < 600 && !daemon_stop_requested(d); t++) {
		int waiting = 0;
		pthread_mutex_lock(&d->lock);
		daemon_mounts_supervise(d);
		for (int i = 0; i < d->cfg.nvol; i++)
			waiting |= keep[i] < 0 && !d->mc[i].mounted && !d->mc[i].restarts;
		pthread_mutex_unlock(&d->lock);
		if (!waiting)
			break;
		usleep(100000);
	}
	char failed[400] = "";
	pthread_mutex_lock(&d->lock);
	for (int i = 0; i < d->cfg.nvol; i++)
		if (keep[i] < 0 && !d->mc[i].mounted)
			add(failed, sizeof(failed), "%s%s on %s", failed[0] ? ", " : "",
			    d->cfg.vol[i].name, d->cfg.vol[i].mountpoint);
	pthread_mutex_unlock(&d->lock);
	if (added[0])
		add(msg, size, "; mounted %s", added);
	if (gone[0])
		add(msg, size, "; unmounted %s", gone);
	if (again[0])
		add(msg, size, "; remounted %s", again);
	add(msg, size, "; %s%s", what[0] ? "changed: " : "no other change", what);
	if (failed[0]) {
		add(msg, size, "; NOT MOUNTED: %s (see the daemon's log; it retries)", failed);
		return RELOAD_DONE_NOT_MOUNTED;
	}
	return RELOAD_DONE;
}

/* The config file read again and given every check a start makes: 0 and
 * nc filled, or -1 and why in err. */
static int load_checked(struct daemon *d, struct config *nc, char *err, size_t size)
{
	if (config_load(d->cfg_path, nc, err, size)) {
		add(err, size, "; the old config stays");
		return -1;
	}
	if (d->passfile)
		snprintf(nc->passphrase_file, sizeof(nc->passphrase_file), "%s", d->passfile);
	if (fixed_check(d, nc, err, size) || daemon_config_check(d, nc, CHECK_RELOAD, err, size))
		return -1;
	return 0;
}

/* The result of a reload (or a refused restart) for status and the CLI. */
static void reload_record(struct daemon *d, int ok, const char *msg)
{
	pthread_mutex_lock(&d->lock);
	d->reload_generation++;
	d->reload_ok = ok;
	snprintf(d->reload_message, sizeof(d->reload_message), "%s", msg);
	daemon_state_save(d);
	pthread_mutex_unlock(&d->lock);
}

void daemon_reload(struct daemon *d)
{
	d->reload_pending = 0;
	struct config *nc = calloc(1, sizeof(*nc));
	char err[CONFIG_PATH * 3] = "", msg[sizeof(d->reload_message)] = "";
	int ok = RELOAD_REFUSED;
	if (!nc)
		snprintf(err, sizeof(err), "%s: out of memory; the old config stays", d->cfg_path);
	else if (!load_checked(d, nc, err, sizeof(err)))
		ok = reload_apply(d, nc, msg, sizeof(msg));
	free(nc);
	if (ok == RELOAD_REFUSED) {
		add(msg, sizeof(msg), "%s", err);
		tlog(LOG_ERR, "daemon: reload refused: %s", msg);
	} else {
		tlog(ok == RELOAD_DONE ? LOG_INFO : LOG_ERR, "daemon: %s", msg);
	}
	reload_record(d, ok, msg);
}

int daemon_restart_check(struct daemon *d)
{
	struct config *nc = calloc(1, sizeof(*nc));
	char err[CONFIG_PATH * 3] = "out of memory", msg[sizeof(d->reload_message)] = "";
	int e = nc ? load_checked(d, nc, err, sizeof(err)) : -1;
	free(nc);
	if (!e)
		return 0;
	/* The next image would refuse it and end every kept mount: stay. */
	snprintf(msg, sizeof(msg), "restart refused: %s", err);
	tlog(LOG_ERR, "daemon: %s; the daemon runs on, its volumes mounted", msg);
	reload_record(d, RELOAD_REFUSED, msg);
	return -1;
}

/* ---- `tresor daemon reload [CONFIG]` --------------------------------- */

/* What the state file says of the daemon and its last reload. */
struct reload_seen {
	int pid;
	long long ready;
	unsigned long long generation;
	int ok;
	char message[1200];
};

static int state_read(const char *path, struct reload_seen *s)
{
	memset(s, 0, sizeof(*s));
	FILE *f = fopen(path, "r");
	if (!f)
		return -errno;
	char line[1200];
	while (fgets(line, sizeof(line), f)) {
		line[strcspn(line, "\n")] = 0;
		if (!strncmp(line, "daemon.pid=", 11))
			s->pid = atoi(line + 11);
		else if (!strncmp(line, "daemon.ready=", 13))
			s->ready = atoll(line + 13);
		else if (!strncmp(line, "reload.generation=", 18))
			s->generation = strtoull(line + 18, NULL, 10);
		else if (!strncmp(line, "reload.ok=", 10))
			s->ok = atoi(line + 10);
		else if (!strncmp(line, "reload.message=", 15))
			snprintf(s->message, sizeof(s->message), "%s", line + 15);
	}
	fclose(f);
	return 0;
}

/*
 * `tresor daemon reload|restart [CONFIG]`: signal the daemon of CONFIG's
 * store (SIGHUP: reload; SIGUSR2: restart) and wait until its state file
 * says it is done: the reload generation moved, or the same pid became
 * ready again.  The config path in *path, the state seen in *after.
 */
static void daemon_signal_wait(struct opts *o, const char *verb, int sig, const char **path,
			       struct reload_seen *after)
{
	if (o->npos > 2)
		die(EXIT_USAGE, "usage: tresor daemon %s [CONFIG]", verb);
	*path = o->npos == 2 ? o->pos[1] : "/etc/tresor/tresor.conf";
	struct config *c = calloc(1, sizeof(*c));
	char err[CONFIG_PATH * 3];
	if (!c)
		die(1, "out of memory");
	/* The file names the daemon (its store), as for status; one that
	 * does not parse would be refused by the daemon the same way. */
	if (config_load(*path, c, err, sizeof(err)))
		die(1, "%s; not %sed: the daemon keeps the config it has", err, verb);
	char real[PATH_MAX];
	if (!realpath(c->store, real))
		die(EXIT_NO_STORE, "store %s of %s: %s", c->store, *path, strerror(errno));
	if (!daemon_running(real))
		die(EXIT_NO_DAEMON, "no tresor daemon runs for %s (start it: tresor daemon %s)", *path,
		    *path);
	struct reload_seen before;
	if (state_read(c->state_file, &before) || before.pid <= 0)
		die(1, "cannot find the daemon's pid in the state file %s of %s (a daemon of an older tresor, or a state-file changed in the file: restart the daemon to take the new config)",
		    c->state_file, *path);
	if (kill(before.pid, sig))
		die(1, "cannot signal the tresor daemon of %s (pid %d): %s", *path, before.pid,
		    strerror(errno));
	if (sig == SIGUSR2 && !before.ready)
		die(1, "the tresor daemon of %s (pid %d) cannot restart in place: it is still starting, or an older tresor (restart it with 'systemctl restart tresor'; its volumes are then remounted)",
		    *path, before.pid);
	for (int t = 0;; t++) {
		usleep(100000);
		if (!state_read(c->state_file, after) && after->pid == before.pid &&
		    (after->generation != before.generation ||
		     (sig == SIGUSR2 && after->ready != before.ready && after->ready)))
			break;
		if (kill(before.pid, 0) && errno == ESRCH)
			die(1, "the tresor daemon of %s (pid %d) ended before it %sed; see its log",
			    *path, before.pid, verb);
		if (t >= RELOAD_WAIT_S * 10)
			die(1, "the tresor daemon of %s has not %sed within %d s: it does when the job that runs now ends; see 'tresor status %s' and its log",
			    *path, verb, RELOAD_WAIT_S, *path);
	}
	free(c);
}

int cmd_daemon_restart(struct opts *o)
{
	const char *path;
	struct reload_seen after;
	daemon_signal_wait(o, "restart", SIGUSR2, &path, &after);
	if (!after.ok && !strncmp(after.message, "restart refused: ", 17))
		die(1, "%s", after.message);
	printf("restarted the daemon of %s (pid %d); its volumes stayed mounted\n", path, after.pid);
	return 0;
}

int cmd_daemon_reload(struct opts *o)
{
	const char *path;
	struct reload_seen after;
	daemon_signal_wait(o, "reload", SIGHUP, &path, &after);
	if (after.ok == RELOAD_DONE) {
		printf("%s\n", after.message);
		return 0;
	}
	if (after.ok == RELOAD_DONE_NOT_MOUNTED)
		die(1, "%s", after.message);
	die(1, "reload refused: %s", after.message);
}
