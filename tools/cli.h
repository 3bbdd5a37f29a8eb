/*
 * cli.h - the parsed command line (struct opts), the helpers the
 * `tresor` commands share (cli.c: opening a store or an index with a
 * clear error, passphrases, dying with an exit code; tools/ only: the
 * libraries never print or exit), and the entry points of the commands
 * (cmd_*.c, which have no header of their own; the daemon's are in
 * daemon.h).
 */
#ifndef TRESOR_CLI_H
#define TRESOR_CLI_H

#include <limits.h>
#include <stdio.h>
#include <time.h>
#include "../fs/namespace.h"
#include "../fs/retention.h"
#include "../chunker/store.h"
#include "../chunker/util.h"

/* Exit codes, one meaning each (documented in docs/CLI.md and tresor(1)):
 * 0 done (status: healthy; mount: mounted, or already mounted as asked),
 * 1 failed (check: problems found; status: unhealthy), and: */
#define EXIT_USAGE 2		/* bad command line or config file */
#define EXIT_NO_DAEMON 3	/* no tresor daemon runs (status, daemon ctl) */
#define EXIT_PASSPHRASE 4	/* the passphrase does not open the store */
#define EXIT_NO_STORE 5		/* the store does not exist / is not a store */

extern const char *usage_text;

/* Common options of every command. */
struct opts {
	const char *passfile;
	int json;
	int foreground;
	int read_data;
	const char *mount_opts;
	const char *time;		/* snapshot create --time */
	const char *note;		/* snapshot create --note (a mark) */
	const char *snap_name;		/* snapshot create --name */
	int scheduled;			/* snapshot create --scheduled: not pinned */
	int dry_run;
	struct retention_policy keep;	/* prune --keep-* */
	/* remote options */
	const char *r_endpoint, *r_region, *r_ca_file, *r_credentials_file;
	const char *r_ssh_key, *r_known_hosts, *r_netrc;
	int r_path_style;
	char r_abs[6][PATH_MAX];	/* absolute forms of the above (remote_opts) */
	long chunk_min, chunk_avg, chunk_max, kdf_log2n;
	/* remote add --grace --object-lock-days --object-lock-mode; push
	 * --grace --jobs --limit-upload --image-every (parsed in cmd_remote.c) */
	const char *r_grace, *r_lock_days, *r_lock_mode, *jobs, *limit_upload, *image_every;
	/* recovery and verification (issue 5) */
	int read_pct;			/* --read-data=N%: 1..100; 0 = all */
	int by_age;			/* check --max-age given */
	int64_t max_age_s;		/* check --max-age DURATION */
	int lazy, full;			/* recover --lazy / --full */
	int takeover;			/* recover --takeover */
	const char *chain;		/* recover --chain ID */
	const char *remote;		/* check --remote NAME, restore --remote URL */
	const char *from;		/* repair --from NAME */
	const char *set;		/* snapshot/prune/restore --set NAME */
	int no_check;			/* remote add/set --no-check: no connection */
	const char *new_passfile;	/* key change-passphrase --new-passphrase-file */
	int help;			/* COMMAND --help */
	char *pos[16];
	int npos;
};

/* Print "tresor: MESSAGE" on stderr and exit with code. */
void die(int code, const char *fmt, ...)
	__attribute__((format(printf, 2, 3), noreturn));
/* Parse argv (argv[0] is the command word) into o. */
void parse_opts(int argc, char **argv, struct opts *o);
/* The passphrase from --passphrase-file, $TRESOR_PASSPHRASE_FILE,
 * $TRESOR_PASSPHRASE_COMMAND, $TRESOR_PASSPHRASE or a prompt.  A file
 * must pass secret_file_check (owner-only), as everywhere. */
char *get_passphrase(const struct opts *o, int confirm, const char *store);
void free_passphrase(char *p);
/* The new passphrase of key change-passphrase: --new-passphrase-file
 * (owner-only) or twice on the terminal, or exit. */
char *get_new_passphrase(const struct opts *o, const char *store);
/* Open the store with its key, or exit with a message saying what to do. */
struct store *open_store(const struct opts *o, const char *dir);
/* Open only the index (commands that need no key), or exit. */
struct index *open_index(const char *dir);
/* The volume named name, or exit with a message naming the store. */
void find_volume(struct index *ix, const char *dir, const char *name,
		 struct volume_info *vi);
/* The snapshot named name ("latest": the newest by time), or exit. */
void find_snapshot(struct index *ix, const char *dir,
		   const struct volume_info *vi, const char *name,
		   struct snapshot_info *si);
/* Print s as a JSON string (on stdout; json_fstr: on f). */
void json_str(const char *s);
void json_fstr(FILE *f, const char *s);
/* Local time t as ISO 8601 with its offset ("2026-01-02T03:04:05+0100"). */
void cli_iso_time(time_t t, char *buf, size_t size);

/* The commands: snapshot and prune (cmd_snapshot.c), restore
 * (cmd_restore.c), remote and push (cmd_remote.c), recover
 * (cmd_recover.c), repair (cmd_repair.c). */
int cmd_snapshot(struct opts *o);
int cmd_prune(struct opts *o);
int cmd_restore(struct opts *o);
int cmd_remote(struct opts *o);
int cmd_push(struct opts *o);
int cmd_recover(struct opts *o);
int cmd_repair(struct opts *o);
int cmd_key(struct opts *o);
/* In cmd_snapset.c: snapshot create|list|pin|unpin --set (o->set). */
int snapset_create(struct opts *o, const char *dir, const char *name, int64_t t, int pin);
/* In cmd_snapset.c too: tell (stderr) what prune does with snapshot name
 * of volume vol (or of set set, vol NULL): kept while pinned, else the
 * policy's. */
void snapshot_retention_note(const char *dir, const char *vol, const char *set,
			     const char *name, int pinned);
/* Tell the daemons of vols that snapshot name came or went behind them
 * (their kernels may cache .snapshots). */
void snapshot_forget(const char *dir, const int64_t *vols, size_t nv, const char *name);
int snapset_list(struct opts *o, const char *dir);
int snapset_pin(struct opts *o, const char *dir, const char *name, int pin);
/* In cmd_repair.c: check --remote NAME for cmd_check (adds its problems). */
int cmd_check_remote(struct opts *o, struct store *st, uint64_t *problems);

/* In cmd_remote.c: remote options from the command line (file paths made
 * absolute; a missing file exits naming the option), and a connection to
 * url (or exit with a message naming it). */
struct remote_options;
struct remote;
void remote_opts(struct opts *o, struct remote_options *ro);
/* url, or the absolute path of the local directory it names relatively
 * (or exit): what is stored must not depend on where it was typed. */
const char *remote_url_abs(struct opts *o, const char *url);
struct remote *open_remote(const char *url, const struct remote_options *ro);

#endif
