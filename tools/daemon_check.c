/*
 * daemon_check.c - the daemon's check job: `tresor check` of the store as
 * a child command (with check-read-data and check-max-age), then each
 * snapshot set's restore drill: its latest snapshot restored into a
 * scratch directory and its restore-drill command run there.  Runs on the
 * job thread (daemon_jobs.c); what status reads is noted under d->lock.
 */
#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../chunker/util.h"
#include "cli.h"
#include "daemon.h"
#include "hook.h"

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(path) && errno != ENOENT ? -1 : 0;
}

static int open_dir(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)ftw;
	if (flag == FTW_D && (sb->st_mode & 0700) != 0700)
		chmod(path, (sb->st_mode & 07777) | 0700);
	return 0;
}

/* Remove the scratch directory dir and everything in it (restored
 * directories may be read-only: opened up first). */
static void rm_tree(const char *dir)
{
	nftw(dir, open_dir, 16, FTW_PHYS);
	nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* The restore drill of set i: its latest snapshot restored into a scratch
 * directory beside the state file (every member, as `tresor restore
 * --set NAME latest DIR`), then its restore-drill command run there
 * (TRESOR_RESTORE_DIR; say, the dump loaded into a scratch database),
 * then the directory removed.  0, -1 with why in err, or 1: the set has
 * no snapshot yet (nothing to drill; not a failure). */
static int drill_set(struct daemon *d, int i, char *err, size_t errsize)
{
	const struct config_set *cs = &d->cfg.set[i];
	char what[96], snap[128] = "", dir[CONFIG_PATH + 96], msg[1400];
	snprintf(what, sizeof(what), "set %s", cs->name);
	/* Which snapshot: the newest, as restore's "latest" takes it. */
	struct index *ix = daemon_index(d);
	struct set_snaps ss = { 0 };
	int e = ix ? daemon_set_snaps(ix, cs->name, &ss) : -EIO;
	if (ix)
		index_close(ix);
	if (!e && !ss.count) {
		tlog(LOG_INFO, "daemon: %s: no snapshot yet, no restore drill", what);
		return 1;
	}
	if (e) {
		snprintf(msg, sizeof(msg), "%s: restore drill: cannot list its snapshots: %s", what,
			 strerror(-e));
		jobs_copy_str(err, errsize, msg);
		return -1;
	}
	jobs_copy_str(snap, sizeof(snap), ss.newest);
	/* Beside the state file: on the store's side, not in /tmp. */
	char base[CONFIG_PATH];
	jobs_copy_str(base, sizeof(base), d->cfg.state_file);
	char *slash = strrchr(base, '/');
	if (slash)
		*slash = 0;
	snprintf(dir, sizeof(dir), "%s/drill-%s", *base ? base : "/", cs->name);
	rm_tree(dir);	/* a drill the daemon died in */
	tlog(LOG_INFO, "daemon: %s: restore drill of snapshot %s into %s", what, snap, dir);
	struct jobs_args a;
	jobs_args_init(d, &a);
	jobs_arg(&a, "restore");
	jobs_arg(&a, d->cfg.store);
	jobs_arg(&a, "--set");
	jobs_arg(&a, cs->name);
	jobs_arg(&a, snap);
	jobs_arg(&a, dir);
	jobs_args_pass(d, &a);
	char out[512], e2[400] = "";
	int rc = jobs_run_child(d, "restore drill", a.v, out, sizeof(out), e2, sizeof(e2));
	if (rc) {
		snprintf(msg, sizeof(msg), "%s: restore drill: restore of %s failed: %s", what, snap,
			 *e2 ? e2 : "see the log");
		rm_tree(dir);
		jobs_copy_str(err, errsize, msg);
		return -1;
	}
	char vols[2048] = "";
	size_t lv = 0;
	for (int j = 0; j < cs->nvol && lv < sizeof(vols); j++)
		lv += snprintf(vols + lv, sizeof(vols) - lv, "%s%s", j ? " " : "",
			       d->cfg.vol[cs->vol[j]].name);
	char env[6][CONFIG_PATH * 2 + 64];
	snprintf(env[0], sizeof(env[0]), "TRESOR_HOOK=restore-drill");
	snprintf(env[1], sizeof(env[1]), "TRESOR_STORE=%s", d->cfg.store);
	snprintf(env[2], sizeof(env[2]), "TRESOR_SET=%s", cs->name);
	snprintf(env[3], sizeof(env[3]), "TRESOR_VOLUMES=%s", vols);
	snprintf(env[4], sizeof(env[4]), "TRESOR_SNAPSHOT=%s", snap);
	snprintf(env[5], sizeof(env[5]), "TRESOR_RESTORE_DIR=%s", dir);
	char *envp[] = { env[0], env[1], env[2], env[3], env[4], env[5], NULL };
	char label[160], why[512];
	snprintf(label, sizeof(label), "%s: restore-drill", what);
	struct hook_result r;
	struct hook_spec hs = { .cmd = cs->drill, .env = envp, .timeout_s = cs->hooks.timeout_s,
				.label = label, .stop = jobs_hook_stop, .stop_arg = d };
	tlog(LOG_INFO, "daemon: %s: running restore-drill %s", what, cs->drill);
	rc = hook_run(&hs, &r, why, sizeof(why));
	rm_tree(dir);
	pthread_mutex_lock(&d->lock);
	jobs_copy_str(d->set_job[i].drill_snapshot, sizeof(d->set_job[i].drill_snapshot), snap);
	pthread_mutex_unlock(&d->lock);
	if (rc) {
		snprintf(msg, sizeof(msg), "%s: restore drill of %s: %s", what, snap, why);
		jobs_copy_str(err, errsize, msg);
		return -1;
	}
	tlog(LOG_INFO, "daemon: %s: restore drill of %s passed", what, snap);
	return 0;
}

/* Every set's restore drill; each noted in its status.  0, or -1 with the
 * first failure in err. */
static int drill_sets(struct daemon *d, char *err, size_t errsize)
{
	int failed = 0;
	for (int i = 0; i < d->cfg.nset && !daemon_stop_requested(d); i++) {
		if (!d->cfg.set[i].drill[0])
			continue;
		char e[600] = "";
		int rc = drill_set(d, i, e, sizeof(e));
		if (rc > 0)
			continue;	/* no snapshot to drill yet */
		time_t end = daemon_now();
		struct set_job *s = &d->set_job[i];
		pthread_mutex_lock(&d->lock);
		s->drill_runs++;
		s->drill_last_run = end;
		s->drill_last_failed = rc != 0;
		if (rc) {
			s->drill_failures++;
			jobs_copy_str(s->drill_error, sizeof(s->drill_error), e);
		} else {
			s->drill_last_ok = end;
		}
		pthread_mutex_unlock(&d->lock);
		if (rc) {
			tlog(LOG_ERR, "daemon: %s", e);
			if (!failed)
				jobs_copy_str(err, errsize, e);
			failed = 1;
		}
	}
	return failed ? -1 : 0;
}

int check_job(struct daemon *d, time_t now, char *err, size_t errsize)
{
	(void)now;
	struct jobs_args a;
	jobs_args_init(d, &a);
	jobs_arg(&a, "check");
	jobs_arg(&a, d->cfg.store);
	char rd[32], age[32];
	if (d->cfg.check_read_data == 100) {
		jobs_arg(&a, "--read-data");
	} else if (d->cfg.check_read_data) {
		snprintf(rd, sizeof(rd), "--read-data=%d%%", d->cfg.check_read_data);
		jobs_arg(&a, rd);
	}
	if (d->cfg.check_max_age_s >= 0) {
		/* Every pack read once per check-max-age, whatever the size:
		 * with it, check-read-data = yes reads only the packs due. */
		snprintf(age, sizeof(age), "%llds", (long long)d->cfg.check_max_age_s);
		jobs_arg(&a, "--max-age");
		jobs_arg(&a, age);
	}
	jobs_arg(&a, "--json");
	jobs_args_pass(d, &a);
	char out[1024], e[400];
	int rc = jobs_run_child(d, "check", a.v, out, sizeof(out), e, sizeof(e));
	/* Then the restore drills: whatever check said, what restores is
	 * worth knowing. */
	char de[600] = "";
	int drc = drill_sets(d, de, sizeof(de));
	if (!rc && !drc)
		return 0;
	if (!rc)
		jobs_copy_str(err, errsize, de);
	else if (rc == 1 && strstr(out, "\"problems\":"))
		snprintf(err, errsize, "check of %s found problems: %s", d->cfg.store,
			 *e ? e : out);
	else
		snprintf(err, errsize, "check of %s: %s", d->cfg.store, *e ? e : "failed");
	return -1;
}
