/*
 * config.h - the daemon's configuration file (INI, read with inih).
 *
 *   [tresor]                      store, passphrase-file, state-file,
 *                                 metrics-listen, metrics-textfile,
 *                                 stale-push, retries, retry-delay
 *   [schedule]                    snapshot, push, check (schedule.h syntax),
 *                                 check-read-data = no|yes|N%,
 *                                 check-max-age = no|DURATION,
 *                                 push-jobs = N, push-limit-upload = RATE
 *   [retention]                   keep-last/-hourly/-daily/-weekly/-monthly/
 *                                 -yearly, keep-within (default daily 30,
 *                                 monthly 12)
 *   [volume NAME]                 mountpoint, options, hooks (below; for a
 *                                 volume in no set)
 *   [snapshot-set NAME]           volumes (each a [volume], in one set only),
 *                                 snapshot (schedule; else [schedule]'s),
 *                                 keep-* (else [retention]'s policy), hooks:
 *                                 before-snapshot, after-snapshot (absolute
 *                                 command), hook-timeout (10m),
 *                                 snapshot-on-hook-failure (no)
 *   [remote NAME]                 url (else it must exist in the store),
 *                                 endpoint, region, path-style, ca-file,
 *                                 credentials-file, ssh-key, known-hosts,
 *                                 netrc
 *
 * The whole file is checked before anything starts: the first bad line is
 * reported as "FILE:LINE: what is wrong".  No secrets in the file itself:
 * only paths of files that hold them.
 */
#ifndef TRESOR_CONFIG_H
#define TRESOR_CONFIG_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>

#include "../fs/retention.h"
#include "schedule.h"

#define CONFIG_MAX_VOLUMES 32
#define CONFIG_MAX_REMOTES 8
#define CONFIG_MAX_SETS 8
#define CONFIG_PATH 1024

/* Commands the daemon runs around a snapshot (hook.h). */
struct config_hooks {
	char before[CONFIG_PATH];	/* before-snapshot; "" none */
	char after[CONFIG_PATH];	/* after-snapshot; "" none */
	int timeout_s;			/* hook-timeout; default 10 min */
	int take_anyway;		/* snapshot-on-hook-failure = yes */
	int line;			/* of the first hook key */
};

struct config_volume {
	char name[65];
	char mountpoint[CONFIG_PATH];
	char options[512];		/* FUSE -o options */
	int line;			/* of its [volume NAME] header */
	struct config_hooks hooks;	/* when it is in no set */
};

/* A snapshot set: its volumes snapshotted at one instant, as one unit. */
struct config_set {
	char name[64];
	int vol[CONFIG_MAX_VOLUMES];	/* indexes into config.vol */
	int nvol;
	struct retention_policy keep;	/* [retention]'s unless keep_set */
	int keep_set;
	int line;			/* of its [snapshot-set NAME] header */
	int vol_line;			/* of its volumes = line */
	struct config_hooks hooks;
	struct schedule snapshot;	/* own_schedule: its own slots */
	int own_schedule;		/* else the [schedule] snapshot job's */
	/* restore-drill: run by the check job on the set's latest snapshot
	 * restored into a scratch directory; "" none */
	char drill[CONFIG_PATH];
};

struct config_remote {
	char name[64];
	char url[512];			/* "" = already configured in the store */
	char endpoint[512], region[64], ca_file[CONFIG_PATH];
	char credentials_file[CONFIG_PATH], ssh_key[CONFIG_PATH];
	char known_hosts[CONFIG_PATH], netrc[CONFIG_PATH];
	int path_style;			/* 1 path, -1 virtual-hosted, 0 default */
	int line;			/* of its [remote NAME] header */
};

struct config {
	char store[CONFIG_PATH];
	char passphrase_file[CONFIG_PATH];
	char state_file[CONFIG_PATH];	/* default STORE/daemon.state */
	char metrics_listen[128];	/* "127.0.0.1:9109", "" = off */
	char metrics_textfile[CONFIG_PATH];
	/* lines of store, state-file and metrics-listen (0: not given): what
	 * a reload cannot change is named by its line */
	int store_line, state_file_line, metrics_listen_line;
	int64_t stale_push_s;		/* status unhealthy past this; default 26 h */
	int retries;			/* extra attempts of a failed job; default 3 */
	int64_t retry_delay_s;		/* first backoff, doubled each time; 60 s */
	struct schedule snapshot, push, check;
	int check_read_data;		/* 0 no, 100 all, 1..99 percent */
	int64_t check_max_age_s;	/* check --max-age; -1 = none */
	int push_jobs;			/* push --jobs; 0 = push's default */
	char push_limit_upload[32];	/* push --limit-upload as given; "" = none */
	int push_image_every;		/* push --image-every; -1 = push's default */
	struct retention_policy keep;
	struct config_volume vol[CONFIG_MAX_VOLUMES];
	int nvol;
	struct config_remote rem[CONFIG_MAX_REMOTES];
	int nrem;
	struct config_set set[CONFIG_MAX_SETS];
	int nset;
};

/* The set volume vi (an index into c->vol) belongs to, or -1. */
int config_set_of(const struct config *c, int vi);

/*
 * Parse the text buf (len bytes, need not be NUL-terminated) named file in
 * messages.  0, or -EINVAL with "FILE:LINE: what is wrong" in err.
 * Defaults are filled in; cross-checks (store set, names unique) done.
 */
int config_parse_buffer(const char *buf, size_t len, const char *file,
			struct config *c, char *err, size_t errsize);

/* A duration as the file's keys and `check --max-age` take it: "90s",
 * "5m", "26h", "2d", "2w" (a bare number is seconds), up to 100 years:
 * 0 and seconds in *out, or -1. */
int config_parse_duration(const char *s, int64_t *out);

/* A rate as `push --limit-upload` takes it ("10M", "512k", "2.5MB/s"):
 * 0 and bytes per second in *out, or -EINVAL. */
int config_parse_rate(const char *s, uint64_t *out);

/* Read and parse a file: as config_parse_buffer, or -errno with
 * "FILE: reason" in err when it cannot be read. */
int config_load(const char *path, struct config *c, char *err, size_t errsize);

#endif
