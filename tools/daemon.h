/*
 * daemon.h - `tresor daemon CONFIG`: the state the daemon's files share,
 * and which file owns what:
 *   daemon.c       start-up, the state file, the volumes' mount children,
 *                  the job thread's loop, shutdown
 *   daemon_jobs.c  the jobs as child `tresor` processes, their retries,
 *                  each remote's push state (jobs_*)
 *   daemon_reload.c  SIGHUP: the config read again and applied, the
 *                  volumes that did not change left mounted;
 *                  `tresor daemon reload` (reload_*)
 *   daemon_ctl.c   the status and what the metrics share of it, the
 *                  control socket, `tresor status`, push forwarding
 *                  (ctl_*, status_json, daemon_volume_snaps, ...)
 *   metrics.c      the Prometheus figures and their endpoints (metrics_*)
 *
 * One thread runs the jobs (snapshot + prune, push, check) one after the
 * other, so two never fight over the store, each as a child `tresor`
 * process, so a crash or hang of one cannot take the mounts down; the
 * control and metrics threads only read the state, under d->lock.
 * Volumes are served by child `tresor mount -f` processes that the job
 * thread supervises (a FUSE daemon that dies is restarted; it cannot take
 * the scheduler down with it).
 */
#ifndef TRESOR_DAEMON_H
#define TRESOR_DAEMON_H

#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "config.h"
#include "keeper.h"
#include "../chunker/listener.h"
#include "../fs/namespace.h"

enum job_kind { JOB_SNAPSHOT, JOB_PRUNE, JOB_PUSH, JOB_CHECK, JOB_COUNT };

struct job_state {
	time_t last_slot;	/* the slot last handled (done or given up) */
	time_t last_run;	/* when the last attempt ended */
	time_t last_ok;		/* when it last succeeded */
	int attempts;		/* failed attempts for the current slot */
	time_t next_retry;	/* after a failure: not before */
	uint64_t runs, failures;	/* totals since the state began */
	int running;
	int last_failed;	/* the last attempt failed */
	double last_duration;	/* seconds the last attempt took (real time) */
	char last_error[400];
};

/* A push `tresor push` asked for: the remote and its options as given
 * ("" = the config's push-jobs / push-limit-upload, or push's default). */
struct push_req {
	char name[64];
	char jobs[8], limit_upload[32], grace[32], image_every[12];
};

/* Every push, scheduled or asked for, goes remote by remote; each
 * remote's health is kept apart, and a remote whose push failed is
 * retried by itself, with the request that failed, whatever started it. */
#define DAEMON_MAX_REMOTES (CONFIG_MAX_REMOTES * 2)
struct remote_state {
	char name[64];
	time_t last_run, last_ok;	/* daemon clock; last_ok 0: not since the state began */
	uint64_t failures;	/* failed pushes since the state began */
	int last_failed;
	char last_error[400];
	int attempts;		/* failed attempts of the current retry series */
	time_t next_retry;	/* attempts > 0: push retry again, not before */
	struct push_req retry;
};

struct mount_child {
	pid_t pid;		/* 0: not running */
	int mounted;		/* seen in /proc/self/mountinfo */
	int restarts;
	time_t next_start;	/* restart backoff (monotonic seconds) */
	char last_error[400];
	/* The mount's FUSE connection, kept across its processes
	 * (keeper.h): a crashed process's successor serves the same mount. */
	int held;		/* conn.fd is open */
	struct keeper_conn conn;
	int keeper_open;	/* keeper: the socket the child sends it on */
	int keeper;
	time_t started_at;	/* of the process (monotonic seconds) */
	int streak;		/* processes that ended within a minute */
};

/* The snapshot hooks of one set or volume (hook.h): how their last run
 * went, for status and the metrics.  Since the daemon started. */
#define DAEMON_MAX_HOOKED (CONFIG_MAX_SETS + CONFIG_MAX_VOLUMES)
struct hook_state {
	char target[80];	/* "set odoo", "volume plans"; "" never ran */
	uint64_t runs, failures;
	int last_failed;	/* a hook of the last snapshot failed */
	char last_error[400];
};

/* A snapshot set with a schedule of its own ([snapshot-set] snapshot =):
 * its snapshot and prune run at its slots, retried as a job is. */
struct set_job {
	time_t last_slot;	/* the slot last handled (done or given up) */
	int slot_known;		/* last_slot came from the state file */
	time_t last_run, last_ok, next_retry;
	int attempts, last_failed;
	/* How its last run ended besides: its before-snapshot hook failed
	 * and the snapshot was skipped, or taken marked (with the set's own
	 * schedule or by the snapshot job). */
	int last_skipped, last_marked;
	uint64_t runs, failures;
	char last_error[400];
	/* Its restore drill (restore-drill, run by the check job). */
	time_t drill_last_run, drill_last_ok;
	int drill_last_failed;
	uint64_t drill_runs, drill_failures;
	char drill_snapshot[128];	/* the snapshot the last drill restored */
	char drill_error[400];
};

/* Recent job runs, for `status` (oldest first, ring). */
#define HISTORY_MAX 32
struct history {
	enum job_kind job;
	time_t slot, start, end;
	int ok;
};


struct daemon {
	struct config cfg;
	const char *cfg_path;
	const char *passfile;	/* --passphrase-file, over the config's */
	char store_real[4096];	/* realpath of the store: socket names */
	int dry_running;	/* --dry-run while a daemon serves the store */
	char self[4096];	/* this binary, for child commands */
	time_t started;
	pthread_mutex_t lock;	/* everything below but the store figures */
	pthread_cond_t cond;	/* job thread <-> push requests */
	struct job_state job[JOB_COUNT];
	struct mount_child mc[CONFIG_MAX_VOLUMES];
	struct history hist[HISTORY_MAX];
	int nhist;
	struct remote_state rem[DAEMON_MAX_REMOTES];
	int nrem;
	struct hook_state hook[DAEMON_MAX_HOOKED];	/* sets, then volumes */
	struct set_job set_job[CONFIG_MAX_SETS];	/* by config.set index */
	struct push_req push_want[CONFIG_MAX_REMOTES];	/* what `tresor push` asked for */
	int npush_want;
	struct push_req push_only[DAEMON_MAX_REMOTES];	/* job thread only: requested pushes or retries */
	int npush_only;
	uint64_t push_generation;	/* bumped when a push ends */
	int push_result;	/* of the last push: 0 ok */
	char push_json[1024];	/* output of the last push child */
	int wake[2];		/* a byte wakes the job thread */
	int sigfd;		/* SIGTERM, SIGINT, SIGHUP (blocked in every thread) */
	volatile sig_atomic_t stopping;	/* set by the job thread only */
	int reload_pending;	/* SIGHUP came (job thread only) */
	int restart_pending;	/* SIGUSR2: re-exec, the mounts kept; 2 once
				 * the config passed (job thread only) */
	/* The kept connections go to systemd's fd store too, so that they
	 * outlive a crash of the daemon itself (NOTIFY_SOCKET and
	 * TRESOR_FDSTORE=1, which the unit sets with FileDescriptorStoreMax);
	 * fd_seq numbers their names (job thread). */
	int fdstore;
	unsigned fd_seq;
	long long ready_ns;	/* when this image had every volume mounted */
	/* The last reload (under lock; in the state file for `daemon
	 * reload`): counted since the start, worked or refused, and why. */
	uint64_t reload_generation;
	int reload_ok;
	char reload_message[1024];
	struct listener ctl;	/* control socket (daemon_ctl.c) */
	struct listener http;	/* metrics endpoint (metrics.c) */
	/* store figures for the metrics: cached, they cost a scan (under
	 * stats_lock, not lock) */
	pthread_mutex_t stats_lock;
	time_t stats_time;
	double stats[8];
	double vol_logical[CONFIG_MAX_VOLUMES];	/* per configured volume */
};

extern const char *const job_names[JOB_COUNT];

/* ---- daemon.c ---------------------------------------------------------- */

/* The daemon's clock: time(NULL), or the time in $TRESOR_TEST_CLOCK's
 * file (seconds since the epoch) when that is set (tests). */
time_t daemon_now(void);

/* A fresh read connection to the store's index, or NULL (the reports
 * then leave out what needs it). */
struct index *daemon_index(struct daemon *d);

/* The job thread's: SIGTERM or SIGINT came (then d->stopping is set);
 * a SIGHUP sets d->reload_pending. */
int daemon_stop_requested(struct daemon *d);
/* Write the state file (lock held). */
void daemon_state_save(struct daemon *d);
/* systemd's notify protocol: msg to $NOTIFY_SOCKET, with descriptor fd
 * (>= 0) for its fd store.  0, or -errno (-ENOENT: no NOTIFY_SOCKET). */
int daemon_sd_notify(const char *msg, int fd);

/* Check the config c before it is used: at the start, for --dry-run, or
 * for a reload (c is the new config; d->cfg the one in use, whose mounts
 * are not in the way).  The store and its volumes, the mount points, the
 * passphrase, the remotes (a new one is added to the store, except dry).
 * 0, or an exit code with "FILE[:LINE]: what is wrong" in err. */
enum check_mode { CHECK_START, CHECK_DRY, CHECK_RELOAD };
int daemon_config_check(struct daemon *d, struct config *c, enum check_mode mode, char *err,
			size_t errsize);
/* The mount child of volume i (of d->cfg): start it (lock held); wait for
 * it to end after a SIGTERM (lock not held); supervise all (lock held):
 * reap, restart with backoff, note which are mounted. */
void daemon_mount_start(struct daemon *d, int i);
void daemon_mount_reap(struct daemon *d, int i);
void daemon_mounts_supervise(struct daemon *d);

/* ---- daemon_reload.c ------------------------------------------------- */

/* Read d->cfg_path again and apply it (job thread, between jobs); the
 * result is logged and kept for `tresor daemon reload`. */
void daemon_reload(struct daemon *d);
/* `tresor daemon reload [CONFIG]`. */
struct opts;
int cmd_daemon_reload(struct opts *o);

/* Keeping mounts alive (daemon_keep.c, keeper.h).  Take the connection
 * volume i's child sent, if it did (lock held); close volume i's kept one
 * (and take it out of systemd's fd store). */
void daemon_keep_recv(struct daemon *d, int i);
void daemon_keep_drop(struct daemon *d, int i);
/* systemd's fd store (d->fdstore): at start, adopt the connections it
 * hands back (LISTEN_FDS, named in STATE-FILE.fds) as daemon_handover_take
 * does; write STATE-FILE.fds anew from the kept connections (job thread,
 * once the state file is this daemon's). */
void daemon_fdstore_take(struct daemon *d);
void daemon_fdstore_save(struct daemon *d);
/* keeper_handover_each's callback at start: adopt a kept connection for
 * the volume of that name and mount point, or end its mount. */
void daemon_handover_take(const char *volume, const char *mountpoint,
			  struct keeper_conn *c, void *arg);
/* Run the binary anew with the kept connections (TRESOR_HANDOVER); returns
 * only if exec failed, the kept mounts then ended. */
void daemon_reexec(struct daemon *d);
/* `tresor daemon restart [CONFIG]`: SIGUSR2, the daemon runs its binary
 * anew with its mounts kept (keeper.h). */
int cmd_daemon_restart(struct opts *o);
/* Before a restart (SIGUSR2): the config file passes every check a start
 * makes (and keeps the store, state file and metrics address); else the
 * restart is refused, recorded as a reload's result, and -1. */
int daemon_restart_check(struct daemon *d);

/* ---- daemon_jobs.c ---------------------------------------------------- */

/* Every job due now, in order snapshot (then prune), push, pushes `tresor
 * push` asked for, push retries, check (job thread). */
void jobs_run_due(struct daemon *d);
/* The state of remote name, added if new (lock held); NULL when full. */
struct remote_state *jobs_remote_state(struct daemon *d, const char *name);

/* The argv of a child `tresor` command: jobs_args_init, then jobs_arg
 * per word (fixed slots), then jobs_args_pass (the passphrase file). */
struct jobs_args {
	char *v[40];
	int n;
};
void jobs_args_init(struct daemon *d, struct jobs_args *a);
void jobs_arg(struct jobs_args *a, const char *s);
void jobs_args_pass(struct daemon *d, struct jobs_args *a);
/* Run `tresor ARGS...` (this binary), wait for it, collect its stdout in
 * out and its last stderr line in err (its stderr also goes to ours,
 * prefixed with what).  Returns the exit code, or 128 + signal. */
int jobs_run_child(struct daemon *d, const char *what, char *const argv[], char *out,
		   size_t outsize, char *err, size_t errsize);
/* In a child before exec: the signals the daemon blocked, unblocked. */
void jobs_child_signals(void);
/* Copy src into dst, cut to fit. */
void jobs_copy_str(char *dst, size_t size, const char *src);
/* A hook's stop test (hook_spec.stop): the daemon was asked to stop, and
 * a SIGTERM must not wait for hook-timeout. */
int jobs_hook_stop(void *arg);

/* The check job and the sets' restore drills (daemon_check.c); 0, or -1
 * with why in err. */
int check_job(struct daemon *d, time_t now, char *err, size_t errsize);

/* ---- daemon_ctl.c, metrics.c ------------------------------------------ */

/* Control socket (daemon_ctl.c): status and push requests. */
int ctl_start(struct daemon *d);
void ctl_stop(struct daemon *d);

/* Metrics (metrics.c): Prometheus text of the daemon's state into a
 * malloc'd string; the HTTP endpoint and the textfile writer. */
char *metrics_render(struct daemon *d);
int metrics_start(struct daemon *d);
void metrics_stop(struct daemon *d);
int metrics_write_textfile(struct daemon *d);

/* What status and the metrics both report, gathered by one piece of code
 * (daemon_ctl.c).  A volume's snapshots: 0, or an error when the store
 * has no such volume or its snapshots cannot be read. */
struct volume_snaps {
	size_t count;
	struct snapshot_info newest;	/* count > 0: the newest by time */
};
int daemon_volume_snaps(struct index *ix, const char *vol, struct volume_snaps *vs);
/* A snapshot set's snapshots: how many, the newest's name and time. */
struct set_snaps {
	size_t count;
	char newest[128];
	int64_t newest_time;	/* ns */
};
int daemon_set_snaps(struct index *ix, const char *set, struct set_snaps *ss);
/* The snapshots of the store's volume vol, oldest first (*s malloc'd). */
int daemon_snapshots(struct index *ix, const char *vol, struct snapshot_info **s, size_t *n);
/* The name one scheduled run at now gives the snapshots of the n volumes
 * (by name): free in all of them and after all their names
 * (ns_snapshot_name), so the run's snapshots share one name.  0 or
 * -errno (name ""). */
int daemon_snapshot_name(struct daemon *d, const char *const *vols, size_t n, time_t now,
			 char *name, size_t size);

/* A remote's health (lock held). */
struct remote_cfg;
struct remote_health {
	const struct remote_state *st;	/* NULL: no push since the state began */
	long long packs_pending, bytes_pending;
	long long behind;	/* s: age of what it holds when newer exists */
	time_t last_push;	/* the store's: when a push last succeeded */
	int stale;		/* last success older than stale-push */
	int healthy;		/* last push worked, not stale */
};
void daemon_remote_health(struct daemon *d, struct index *ix, const struct remote_cfg *rc,
			  time_t now, struct remote_health *h);

/* Status: JSON of the daemon's state (malloc'd); *healthy set. */
char *status_json(struct daemon *d, int *healthy);

/* The commands: `tresor daemon` (daemon.c), `tresor status` and the push
 * forwarding of `tresor push` (daemon_ctl.c). */
struct opts;
int cmd_daemon(struct opts *o);
int cmd_status(struct opts *o);
/* If a scheduling daemon serves the store of `push STORE REMOTE`, have it
 * push and return the exit code; -1 when none runs (push yourself). */
int daemon_forward_push(struct opts *o);
/* 1 if a scheduling daemon answers on the control socket of store_real. */
int daemon_running(const char *store_real);

#endif
