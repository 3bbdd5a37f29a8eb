/*
 * tresor.c - main: the dispatch of `tresor COMMAND`, and the commands
 * that are a few library calls each: init, volume, mount (with the fetch
 * hook of a lazy store), stats, check.  Every error names the store,
 * volume or file it concerns.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdarg.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include "../fs/check.h"
#include "../remote/fetch.h"
#include "../fs/vfs.h"
#include "cli.h"
#include "daemon.h"
#include "keeper.h"
#include "progress.h"

#ifndef TRESOR_VERSION
#define TRESOR_VERSION "0.1.0"
#endif


const char *usage_text =
	"usage: tresor COMMAND ...\n"
	"  init STORE [--chunk-min N] [--chunk-avg N] [--chunk-max N] [--kdf-log2n N]\n"
	"  volume create STORE NAME\n"
	"  volume list STORE [--json]\n"
	"  mount STORE VOLUME MOUNTPOINT [-o OPTS] [-f]\n"
	"        (-o ro,allow_other,list_snapshots,noacl,writeback,mt,workers=N,nonempty,...)\n"
	"  stats STORE [--json]\n"
	"  check STORE [--read-data[=N%]] [--max-age DURATION] [--remote NAME] [--json]\n"
	"  snapshot create STORE VOLUME [--time ISO-8601] [--name NAME] [--scheduled] [--note TEXT]\n"
	"  snapshot create STORE --set SET [VOLUME...] [--time ISO-8601] [--name NAME] [--scheduled]\n"
	"        [--note TEXT] [--json]   (pinned unless --scheduled)\n"
	"  snapshot list STORE VOLUME|--set SET [--json]\n"
	"  snapshot pin|unpin STORE VOLUME NAME | STORE --set SET NAME\n"
	"  snapshot diff STORE VOLUME OLD NEW [--json]\n"
	"  restore STORE VOLUME SNAPSHOT PATH DEST\n"
	"  restore STORE --set SET SNAPSHOT|latest DEST   (each member into DEST/VOLUME)\n"
	"  prune STORE VOLUME|--set SET [--keep-last N] [--keep-hourly N] [--keep-daily N] [--keep-weekly N]\n"
	"        [--keep-monthly N] [--keep-yearly N] [--keep-within DURATION] [--dry-run] [--json]\n"
	"  remote add STORE NAME URL [--endpoint URL] [--region R] [--path-style|--virtual-hosted]\n"
	"        [--ca-file F] [--credentials-file F] [--ssh-key K] [--known-hosts F] [--netrc F]\n"
	"        [--grace 7d] [--object-lock-days N [--object-lock-mode governance|compliance]]\n"
	"        [--no-check (do not try the connection)]\n"
	"  remote set STORE NAME [--endpoint URL] [--region R] [--ca-file F] [--credentials-file F]\n"
	"        [--ssh-key K] [--known-hosts F] [--netrc F] [--no-check]\n"
	"  remote list|status STORE [--json]\n"
	"  remote takeover STORE NAME    (this store pushes there from now on; others are refused)\n"
	"  push STORE REMOTE [--json]\n"
	"        [--jobs 4] [--limit-upload RATE (10M: bytes/s)] [--grace DURATION]\n"
	"        [--image-every 64 (an image of the index every N objects; 0: never)]\n"
	"  recover URL STORE [--lazy|--full] [--takeover] [--chain ID] [remote options]\n"
	"  repair STORE --from REMOTE\n"
	"  restore --remote URL VOLUME SNAPSHOT PATH DEST [remote options]\n"
	"  restore --remote URL --set SET SNAPSHOT DEST [remote options]\n"
	"  key change-passphrase STORE [--new-passphrase-file FILE] [--kdf-log2n N]\n"
	"  key export STORE    (the key file as text, for a paper backup)\n"
	"  daemon CONFIG [--dry-run]\n"
	"  daemon reload [CONFIG]\n"
	"  daemon restart [CONFIG]   (new binary, volumes stay mounted)\n"
	"  status [CONFIG] [--json]\n"
	"  --version\n"
	"  COMMAND --help\n"
	"Commands that need the key read the passphrase from --passphrase-file FILE,\n"
	"else $TRESOR_PASSPHRASE_FILE, else the first line $TRESOR_PASSPHRASE_COMMAND\n"
	"prints, else $TRESOR_PASSPHRASE, else a prompt on the terminal.\n"
	"Exit codes: 0 done, 1 failed, 2 usage, 3 no daemon runs, 4 wrong passphrase,\n"
	"5 no such store (docs/CLI.md, man tresor).\n";

/* `tresor COMMAND --help`: the lines of usage_text for COMMAND (and their
 * continuation lines), then how the passphrase is read: one text for
 * both, so they cannot drift apart.  0 if COMMAND has lines. */
static int print_command_usage(const char *cmd)
{
	size_t clen = strlen(cmd);
	int in = 0, found = 0;
	for (const char *p = usage_text; *p; ) {
		size_t len = strcspn(p, "\n");
		if (!strncmp(p, "        ", 8)) {
			/* a continuation line: goes with the line before */
		} else if (!strncmp(p, "  ", 2)) {
			in = !strncmp(p + 2, cmd, clen) && (p[2 + clen] == ' ' || p[2 + clen] == '\n');
		} else {
			in = 0;
		}
		if (in) {
			if (!found)
				printf("usage:\n");
			if (strncmp(p, "        ", 8))
				printf("  tresor %.*s\n", (int)len - 2, p + 2);
			else
				printf("%.*s\n", (int)len, p);
			found = 1;
		}
		p += len + (p[len] == '\n');
	}
	if (!found)
		return -1;
	const char *tail = strstr(usage_text, "Commands that need the key");
	if (tail)
		fputs(tail, stdout);
	printf("See man tresor-%s (or man tresor).\n", cmd);
	return 0;
}

static int cmd_init(struct opts *o)
{
	if (o->npos != 1)
		die(EXIT_USAGE, "usage: tresor init STORE [--chunk-min N] [--chunk-avg N] [--chunk-max N]");
	const char *dir = o->pos[0];
	struct store_params p;
	store_params_default(&p);
	if (o->chunk_avg) {
		p.chunk_avg = o->chunk_avg;
		p.chunk_min = o->chunk_min ? (uint32_t)o->chunk_min : p.chunk_avg / 4;
		p.chunk_max = o->chunk_max ? (uint32_t)o->chunk_max : p.chunk_avg * 4;
	} else {
		if (o->chunk_min)
			p.chunk_min = o->chunk_min;
		if (o->chunk_max)
			p.chunk_max = o->chunk_max;
	}
	if (o->kdf_log2n)
		p.kdf.log2n = o->kdf_log2n;
	struct stat sb;
	if (!stat(dir, &sb) && !S_ISDIR(sb.st_mode))
		die(1, "cannot create store %s: it exists and is not a directory", dir);
	char *pass = get_passphrase(o, 1, dir);
	int err = store_init(dir, &p, pass, strlen(pass));
	free_passphrase(pass);
	if (err == -ENOTEMPTY || err == -EEXIST)
		die(1, "cannot create store %s: the directory is not empty", dir);
	if (err == -EINVAL)
		die(1, "cannot create store %s: bad chunk sizes (need 64 <= min < avg < max <= 64M, avg a power of two) or KDF cost",
		    dir);
	if (err)
		die(1, "cannot create store %s: %s", dir, strerror(-err));
	printf("created store %s (chunks %u/%u/%u bytes)\n", dir, p.chunk_min,
	       p.chunk_avg, p.chunk_max);
	return 0;
}

static int valid_volume_name(const char *s)
{
	if (!*s || strlen(s) > 64)
		return 0;
	for (const char *c = s; *c; c++)
		if (!(*c >= 'a' && *c <= 'z') && !(*c >= 'A' && *c <= 'Z') &&
		    !(*c >= '0' && *c <= '9') && *c != '-' && *c != '_' && *c != '.')
			return 0;
	return s[0] != '.';
}

static int cmd_volume(struct opts *o)
{
	if (o->npos >= 3 && !strcmp(o->pos[0], "create")) {
		const char *dir = o->pos[1], *name = o->pos[2];
		if (!valid_volume_name(name))
			die(EXIT_USAGE, "bad volume name '%s': use letters, digits, '-', '_', '.' (up to 64)",
			    name);
		struct index *ix = open_index(dir);
		struct volume_info vi;
		int err = index_begin(ix);
		if (!err)
			err = ns_volume_create(ix, name, getuid(), getgid(),
						  vfs_now(), &vi);
		if (!err)
			err = index_commit(ix);
		index_close(ix);
		if (err == -EEXIST)
			die(1, "store %s already has a volume '%s'", dir, name);
		if (err)
			die(1, "cannot create volume '%s' in store %s: %s", name,
			    dir, strerror(-err));
		printf("created volume %s in %s\n", name, dir);
		return 0;
	}
	if (o->npos == 2 && !strcmp(o->pos[0], "list")) {
		struct index *ix = open_index(o->pos[1]);
		struct volume_info *vis;
		size_t n;
		int err = ns_volume_list(ix, &vis, &n);
		if (err)
			die(1, "cannot list volumes of %s: %s", o->pos[1], strerror(-err));
		if (o->json)
			printf("[");
		for (size_t i = 0; i < n; i++) {
			struct ns_stats s;
			ns_stats(ix, vis[i].id, &s);
			if (o->json) {
				printf("%s{\"name\":", i ? "," : "");
				json_str(vis[i].name);
				printf(",\"logical_bytes\":%llu,\"files\":%llu}",
				       (unsigned long long)s.logical,
				       (unsigned long long)s.files);
			} else {
				printf("%s\t%llu files\t%llu bytes\n", vis[i].name,
				       (unsigned long long)s.files,
				       (unsigned long long)s.logical);
			}
		}
		if (o->json)
			printf("]\n");
		free(vis);
		index_close(ix);
		return 0;
	}
	die(EXIT_USAGE, "usage: tresor volume create STORE NAME | tresor volume list STORE [--json]");
}

/* Whether the comma-separated mount options hold key (a flag, or
 * "key=..." whose value goes to val). */
static int mount_opt(const char *opts, const char *key, char *val, size_t size)
{
	size_t klen = strlen(key);
	for (const char *p = opts; p && *p; p += strcspn(p, ","), p += *p == ',') {
		size_t len = strcspn(p, ",");
		if (len < klen || strncmp(p, key, klen) || (len > klen && p[klen] != '='))
			continue;
		if (val && len > klen)
			snprintf(val, size, "%.*s", (int)(len - klen - 1), p + klen + 1);
		return 1;
	}
	return 0;
}

/* A mount's fetch hook: with a remote configured, packs not here (a lazy
 * recovery) or bad here are fetched from it on read.  Attached after the
 * fork, since the remote holds connections and the fetcher a thread. */
static void mount_attach_fetcher(struct vfs *v, void *arg)
{
	(void)arg;
	struct store *st = v->st;
	const char *name = *v->fetch_remote ? v->fetch_remote : NULL;
	char label[300];
	snprintf(label, sizeof(label), "volume %s", v->vol.name);
	int err = fetcher_attach(st, name, label, FETCH_BACKGROUND, v->fill);
	if (err && err != -ENOENT)
		tlog(LOG_WARN, "store %s: remote %s unusable for fetching packs (%s); reads of missing or damaged packs will fail",
		     st->dir, name ? name : "origin", strerror(-err));
	else if (!err)
		tlog(LOG_INFO, "store %s: packs missing or damaged here are fetched from remote '%s'",
		     st->dir, fetcher_remote_name(st->fetch));
	if (!err)
		fetcher_set_wanted(st->fetch, vfs_pack_wanted, v);
}

/* Before vfs_close: the fetcher's thread asks v (vfs_pack_wanted). */
static void mount_stop_fetcher(struct vfs *v, void *arg)
{
	(void)arg;
	fetcher_stop_thread(v->st->fetch);
}

/* After vfs_close: the workers that read have stopped. */
static void mount_detach_fetcher(struct vfs *v, void *arg)
{
	(void)arg;
	fetcher_detach(v->st);
}

static int mount_adopted(struct opts *o, struct keeper_conn *adopt);
static void mount_give_keeper(int fuse_fd, const void *init, size_t len, void *arg);
static int mount_finish(int err, struct store *st, const char *dir, const char *vol,
			const char *mnt);

static int cmd_mount(struct opts *o)
{
	if (o->npos != 3)
		die(EXIT_USAGE, "usage: tresor mount STORE VOLUME MOUNTPOINT [-o OPTS] [-f]");
	const char *dir = o->pos[0], *vol = o->pos[1], *mnt = o->pos[2];
	/* The daemon hands this process a connection to serve (keeper.h):
	 * the mount exists, and answers nobody until this process serves. */
	struct keeper_conn adopt;
	int adopting = keeper_adopt_from_env(&adopt);
	if (adopting < 0)
		die(1, "volume '%s' on %s: the FUSE connection handed over in TRESOR_FUSE_FD/TRESOR_FUSE_INIT is not usable; restart the daemon",
		    vol, mnt);
	if (adopting)
		return mount_adopted(o, &adopt);
	/* Mounted already, as asked (a second `mount -a`, a rerun of a
	 * script): nothing to do.  Another tresor mount there: refused. */
	char have[PATH_MAX + 80], want[PATH_MAX + 80];
	if (vfs_mounted_at(mnt, have, sizeof(have))) {
		vfs_mount_source(dir, vol, want, sizeof(want));
		if (!strcmp(have, want)) {
			fprintf(stderr, "tresor: volume '%s' of store %s is already mounted on %s; nothing to do\n",
				vol, dir, mnt);
			return 0;
		}
		die(1, "cannot mount volume '%s' on %s: %s is mounted there; unmount it first (fusermount3 -u %s)",
		    vol, mnt, have, mnt);
	}
	struct stat sb;
	if (stat(mnt, &sb) || !S_ISDIR(sb.st_mode))
		die(1, "cannot mount volume '%s' on %s: not a directory", vol, mnt);
	struct store *st = open_store(o, dir);
	struct volume_info vi;
	if (ns_volume_find(st->ix, vol, &vi))
		die(1, "store %s has no volume '%s' (see 'tresor volume list %s')",
		    dir, vol, dir);
	/* A lazy store reads what it lacks from its remote: one that cannot
	 * be used would make those reads fail with EIO, so say it now. */
	char from[64] = "", rname[64], why[700];
	mount_opt(o->mount_opts, "remote", from, sizeof(from));
	if (fetch_lazy_check(st->ix, from, 1, rname, sizeof(rname), why, sizeof(why))) {
		if (!mount_opt(o->mount_opts, "allow_unfetchable", NULL, 0))
			die(1, "store %s is lazy and its remote '%s' cannot be used (%s): fix the remote with 'tresor remote set %s %s [remote options]' or complete the store with 'tresor recover URL %s --full'; -o allow_unfetchable mounts it anyway",
			    dir, rname, why, dir, rname, dir);
		fprintf(stderr, "tresor: WARNING: store %s is lazy and its remote '%s' cannot be used (%s): reads of files not fetched yet fail with EIO until it is fixed (mounted anyway: -o allow_unfetchable)\n",
			dir, rname, why);
	}
	struct vfs_mount_hooks hooks = {
		.started = mount_attach_fetcher, .stopping = mount_stop_fetcher,
		.closed = mount_detach_fetcher,
	};
	/* Under the daemon: it keeps a copy of the connection (keeper.h). */
	const char *keeper = getenv("TRESOR_KEEPER_FD");
	int keeper_fd = keeper ? atoi(keeper) : -1;
	unsetenv("TRESOR_KEEPER_FD");
	if (keeper_fd >= 0) {
		hooks.connected = mount_give_keeper;
		hooks.arg = &keeper_fd;
		fcntl(keeper_fd, F_SETFD, FD_CLOEXEC);
	}
	int err = vfs_mount_main(st, vol, mnt, o->mount_opts, o->foreground, &hooks);
	if (keeper_fd >= 0)
		close(keeper_fd);
	return mount_finish(err, st, dir, vol, mnt);
}

/* After the first process: serve the connection adopt holds. */
static int mount_adopted(struct opts *o, struct keeper_conn *adopt)
{
	const char *dir = o->pos[0], *vol = o->pos[1], *mnt = o->pos[2];
	struct store *st = open_store(o, dir);
	struct vfs_mount_hooks hooks = {
		.started = mount_attach_fetcher, .stopping = mount_stop_fetcher,
		.closed = mount_detach_fetcher, .adopt_fd = adopt->fd,
		.adopt_init = adopt->init, .adopt_init_len = adopt->init_len,
		.fh_gen = adopt->gen, .adopt_crashed = adopt->crashed,
	};
	int err = vfs_mount_main(st, vol, mnt, o->mount_opts, 1, &hooks);
	if (err == 0) {
		/* stopped for good: libfuse did not mount it, so it cannot
		 * unmount it either */
		int e = keeper_unmount(mnt);
		if (e)
			fprintf(stderr, "tresor: WARNING: volume '%s': cannot unmount %s: %s; unmount it by hand (fusermount3 -u -z %s)\n",
				vol, mnt, strerror(-e), mnt);
	}
	return mount_finish(err, st, dir, vol, mnt);
}

/* The mount's connection to the daemon, which keeps it (keeper.h). */
static void mount_give_keeper(int fuse_fd, const void *init, size_t len, void *arg)
{
	int err = keeper_send(*(int *)arg, fuse_fd, init, len);
	if (err)
		tlog(LOG_WARN, "the daemon does not keep this mount's FUSE connection (%s): a crash of this process unmounts it",
		     strerror(-err));
}

static int mount_finish(int err, struct store *st, const char *dir, const char *vol,
			const char *mnt)
{
	if (err == VFS_DETACHED)
		err = 0;	/* left to the next process */
	int e2 = store_close(st);
	if (err == -EBUSY)
		die(1, "volume '%s' of store %s is already mounted by another process",
		    vol, dir);
	if (err == -ENOTCONN)
		die(1, "cannot mount volume '%s' on %s (see the message above)", vol, mnt);
	if (err == -ENOTEMPTY)
		die(1, "cannot mount volume '%s' on %s: the directory is not empty, and the mount would hide its files; empty it, or mount over them with -o nonempty",
		    vol, mnt);
	if (err)
		die(1, "volume '%s' of store %s: %s", vol, dir, strerror(-err));
	if (e2)
		die(1, "store %s: closing failed: %s; run 'tresor check %s'", dir,
		    strerror(-e2), dir);
	return 0;
}

static double ratio(uint64_t a, uint64_t b)
{
	return b ? (double)a / (double)b : 1.0;
}

static int cmd_stats(struct opts *o)
{
	if (o->npos != 1)
		die(EXIT_USAGE, "usage: tresor stats STORE [--json]");
	struct index *ix = open_index(o->pos[0]);
	struct ns_stats s;
	int err = ns_stats(ix, -1, &s);
	struct volume_info *vis = NULL;
	size_t n = 0;
	if (!err)
		err = ns_volume_list(ix, &vis, &n);
	if (err)
		die(1, "cannot read the index of store %s: %s", o->pos[0], strerror(-err));
	s.pack_bytes = store_packs_disk_bytes(o->pos[0], ix);
	uint64_t live = 0, snap_only = 0, reclaim = 0;
	if (!err)
		err = ns_space(ix, &live, &snap_only, &reclaim);
	if (err)
		die(1, "cannot read the index of store %s: %s", o->pos[0], strerror(-err));
	uint64_t mapped = 0, unique = 0;
	if (ns_live_dedup(ix, &mapped, &unique))
		die(1, "cannot read the index of store %s", o->pos[0]);
	/* Of the live tree: snapshots would count their history twice.
	 * Bytes mapped more than once (deduplicated writes and copies that
	 * share extents alike) are stored once: shared. */
	double dedup = ratio(mapped, unique);
	uint64_t shared = mapped > unique ? mapped - unique : 0;
	double comp = ratio(s.chunk_raw, s.chunk_stored);
	if (o->json) {
		printf("{\"logical_bytes\":%llu,\"files\":%llu,\"stored_bytes\":%llu,"
		       "\"unique_bytes\":%llu,\"chunks\":%llu,\"chunk_stored_bytes\":%llu,"
		       "\"garbage_chunks\":%llu,\"garbage_bytes\":%llu,\"packs\":%llu,"
		       "\"dedup_ratio\":%.4f,\"compression_ratio\":%.4f,"
		       "\"live_bytes\":%llu,\"snapshot_only_bytes\":%llu,\"reclaimable_bytes\":%llu,"
		       "\"shared_bytes\":%llu,\"volumes\":[",
		       (unsigned long long)s.logical, (unsigned long long)s.files,
		       (unsigned long long)s.pack_bytes, (unsigned long long)s.chunk_raw,
		       (unsigned long long)s.chunks, (unsigned long long)s.chunk_stored,
		       (unsigned long long)s.garbage_chunks,
		       (unsigned long long)s.garbage_stored,
		       (unsigned long long)s.packs, dedup, comp,
		       (unsigned long long)live, (unsigned long long)snap_only,
		       (unsigned long long)reclaim, (unsigned long long)shared);
	} else {
		/* What a mount wrote in the last second, and what `cp` still
		 * holds in a mount's buffers, is not in the index yet. */
		printf("store %s (as of its last commit: a mount commits every second and at sync; run sync first to count a copy just made)\n",
		       o->pos[0]);
		printf("  logical bytes   %llu in %llu files\n",
		       (unsigned long long)s.logical, (unsigned long long)s.files);
		printf("  unique bytes    %llu in %llu chunks\n",
		       (unsigned long long)s.chunk_raw, (unsigned long long)s.chunks);
		printf("  stored bytes    %llu in %llu packs (%llu in unreferenced chunks)\n",
		       (unsigned long long)s.pack_bytes, (unsigned long long)s.packs,
		       (unsigned long long)s.garbage_stored);
		printf("  dedup ratio     %.2f\n  compression     %.2f\n", dedup, comp);
		printf("  shared bytes    %llu (live bytes stored once for several"
		       " places: dedup and shared copies)\n", (unsigned long long)shared);
		printf("  stored for the live tree %llu, for snapshots only %llu, reclaimable %llu\n",
		       (unsigned long long)live, (unsigned long long)snap_only,
		       (unsigned long long)reclaim);
	}
	for (size_t i = 0; i < n; i++) {
		struct ns_stats vs;
		ns_stats(ix, vis[i].id, &vs);
		if (o->json) {
			printf("%s{\"name\":", i ? "," : "");
			json_str(vis[i].name);
			printf(",\"logical_bytes\":%llu,\"files\":%llu}",
			       (unsigned long long)vs.logical,
			       (unsigned long long)vs.files);
		} else {
			printf("  volume %-20s %llu bytes in %llu files\n", vis[i].name,
			       (unsigned long long)vs.logical,
			       (unsigned long long)vs.files);
		}
	}
	if (o->json)
		printf("]}\n");
	free(vis);
	index_close(ix);
	return 0;
}

static void print_problem(void *arg, const char *line)
{
	const char *store = arg;
	if (!strncmp(line, "  ", 2))
		printf("%s\n", line);	/* the files a problem affects */
	else
		printf("problem: store %s: %s\n", store, line);
}

/* What --read-data did to the packs' verification times: due and read
 * (with --max-age) and the oldest left, human (into buf) or JSON. */
static void check_age_report(const struct opts *o, const struct check_result *r,
			     char *buf, size_t size)
{
	char when[64] = "";
	if (r->oldest_verified)
		cli_iso_time((time_t)(r->oldest_verified / 1000000000), when, sizeof(when));
	if (o->json) {
		snprintf(buf, size, "\"packs_due\":%llu,\"packs_due_read\":%llu,"
			 "\"packs_never_verified\":%llu,\"oldest_verified\":%s%s%s,",
			 (unsigned long long)r->packs_due,
			 (unsigned long long)r->packs_due_read,
			 (unsigned long long)r->packs_never, *when ? "\"" : "",
			 *when ? when : "null", *when ? "\"" : "");
		return;
	}
	char never[64] = "";
	if (r->packs_never)
		snprintf(never, sizeof(never), ", %llu pack(s) never verified",
			 (unsigned long long)r->packs_never);
	snprintf(buf, size, "; %llu pack(s) due by age, %llu read; oldest verification now %s%s",
		 (unsigned long long)r->packs_due, (unsigned long long)r->packs_due_read,
		 *when ? when : "none", never);
}

static int cmd_check(struct opts *o)
{
	if (o->npos != 1)
		die(EXIT_USAGE, "usage: tresor check STORE [--read-data[=N%%]] [--max-age DURATION] [--remote NAME] [--json]");
	if (o->by_age)
		o->read_data = 1;	/* --max-age says which data to read */
	struct store *st = open_store(o, o->pos[0]);
	struct progress p;
	progress_start(&p, "check", 0);
	struct check_opts co = { .read_data = o->read_data, .read_pct = o->read_pct,
				 .by_age = o->by_age, .max_age = o->max_age_s * 1000000000,
				 .progress = progress_cb, .progress_arg = &p };
	struct check_result r;
	int err = store_check(st, &co, print_problem, o->pos[0], &r);
	progress_end(&p);
	uint64_t rproblems = 0;
	if (!err && o->remote)
		err = cmd_check_remote(o, st, &rproblems);
	store_close(st);
	if (err)
		die(1, "check of store %s could not run: %s", o->pos[0], strerror(-err));
	char share[64] = "", age[256] = "";
	if (o->read_data && o->read_pct && o->read_pct < 100)
		snprintf(share, sizeof(share), ", %s%d%% of the data read (%llu chunks)",
			 o->by_age ? "the packs due and " : "", o->read_pct,
			 (unsigned long long)r.chunks_read);
	else if (o->by_age)
		snprintf(share, sizeof(share), ", the packs due read (%llu chunks)",
			 (unsigned long long)r.chunks_read);
	else if (o->read_data)
		snprintf(share, sizeof(share), ", all data read");
	if (o->read_data)
		check_age_report(o, &r, age, sizeof(age));
	if (o->json)
		printf("{\"packs\":%llu,\"chunks\":%llu,\"extents\":%llu,\"inodes\":%llu,"
		       "\"bytes_read\":%llu,\"chunks_read\":%llu,\"not_local\":%llu,%s"
		       "\"files_affected\":%llu,\"remote_problems\":%llu,\"problems\":%llu}\n",
		       (unsigned long long)r.packs, (unsigned long long)r.chunks,
		       (unsigned long long)r.extents, (unsigned long long)r.inodes,
		       (unsigned long long)r.bytes_read, (unsigned long long)r.chunks_read,
		       (unsigned long long)r.not_local, age,
		       (unsigned long long)r.files_affected,
		       (unsigned long long)rproblems,
		       (unsigned long long)(r.problems + rproblems));
	else
		printf("checked store %s: %llu packs, %llu chunks, %llu inodes%s%s%s: %llu problem(s)%s\n",
		       o->pos[0], (unsigned long long)r.packs,
		       (unsigned long long)r.chunks, (unsigned long long)r.inodes,
		       share, r.not_local ? " (lazy: packs not fetched yet are not read)" : "",
		       o->by_age ? age : "", (unsigned long long)r.problems,
		       r.files_affected ? "; the files listed are affected" : "");
	return r.problems || rproblems ? 1 : 0;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fputs(usage_text, stderr);
		return EXIT_USAGE;
	}
	const char *cmd = argv[1];
	if (!strcmp(cmd, "--version") || !strcmp(cmd, "version")) {
		printf("tresor %s (store format %d)\n", TRESOR_VERSION,
		       STORE_FORMAT_VERSION);
		return 0;
	}
	if (!strcmp(cmd, "--help") || !strcmp(cmd, "help")) {
		fputs(usage_text, stdout);
		return 0;
	}
	struct opts o;
	parse_opts(argc - 1, argv + 1, &o);
	if (o.help) {
		if (print_command_usage(cmd))
			die(EXIT_USAGE, "unknown command '%s' (see 'tresor --help')", cmd);
		return 0;
	}
	if (!strcmp(cmd, "init"))
		return cmd_init(&o);
	if (!strcmp(cmd, "volume"))
		return cmd_volume(&o);
	if (!strcmp(cmd, "mount"))
		return cmd_mount(&o);
	if (!strcmp(cmd, "stats"))
		return cmd_stats(&o);
	if (!strcmp(cmd, "check"))
		return cmd_check(&o);
	if (!strcmp(cmd, "snapshot"))
		return cmd_snapshot(&o);
	if (!strcmp(cmd, "prune"))
		return cmd_prune(&o);
	if (!strcmp(cmd, "restore"))
		return cmd_restore(&o);
	if (!strcmp(cmd, "remote"))
		return cmd_remote(&o);
	/* A running scheduling daemon pushes instead (one writer). */
	int fwd = !strcmp(cmd, "push") ? daemon_forward_push(&o) : -1;
	if (fwd >= 0)
		return fwd;
	if (!strcmp(cmd, "push"))
		return cmd_push(&o);
	if (!strcmp(cmd, "recover"))
		return cmd_recover(&o);
	if (!strcmp(cmd, "repair"))
		return cmd_repair(&o);
	if (!strcmp(cmd, "key"))
		return cmd_key(&o);
	if (!strcmp(cmd, "daemon"))
		return cmd_daemon(&o);
	if (!strcmp(cmd, "status"))
		return cmd_status(&o);
	die(EXIT_USAGE, "unknown command '%s' (see 'tresor --help')", cmd);
}
