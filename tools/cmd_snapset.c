/*
 * cmd_snapset.c - snapshot sets from the command line: `tresor snapshot
 * create|list|pin|unpin STORE --set NAME ...` (prune and restore of a set
 * are in cmd_snapshot.c and cmd_restore.c, through the calls below).
 *
 * A set is several volumes of one store snapshotted at one instant: each
 * member's daemon flushes and holds its writes (control_hold), then one
 * index transaction records every member's snapshot under one name and
 * time, then the daemons are released.  A member no daemon serves is
 * held by its volume lock instead, as `snapshot create` does.
 *
 * Also here, for cmd_snapshot.c as for sets (so that it calls this file
 * and not both ways): telling daemons a snapshot name came or went
 * (snapshot_forget), and saying what retention does with a new snapshot
 * (snapshot_retention_note).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../fs/control.h"
#include "../fs/vfs.h"
#include "cli.h"

/* How long a member's daemon may take to flush before the set gives up. */
#define SET_FLUSH_MS 120000
/* How long a member's daemon may take to answer a ping, before any member
 * is held: a daemon that hangs must not keep the others' writes held for
 * SET_FLUSH_MS. */
#define SET_PING_MS 5000

/* One member while the set is taken. */
struct member {
	struct volume_info vi;
	int fd;		/* control connection holding its daemon, or -1 */
	int lfd;	/* its volume lock when no daemon serves it, or -1 */
	int64_t epoch;	/* its epoch the daemon reported */
};

static int64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Say on stderr what retention does with snapshot name (of volume vol,
 * or of set set): stdout is its name alone, for scripts. */
void snapshot_retention_note(const char *dir, const char *vol, const char *set,
			     const char *name, int pinned)
{
	if (pinned)
		fprintf(stderr, "tresor: snapshot %s of %s '%s' is pinned: prune keeps it until 'tresor snapshot unpin %s %s%s %s' (--scheduled leaves a snapshot to the retention policy)\n",
			name, set ? "set" : "volume", set ? set : vol, dir,
			set ? "--set " : "", set ? set : vol, name);
	else
		fprintf(stderr, "tresor: snapshot %s of %s '%s' is not pinned: prune's retention policy decides when it goes\n",
			name, set ? "set" : "volume", set ? set : vol);
}

/* Tell the daemons of vols (those mounted) that snapshot name of their
 * volume changed behind them (made or deleted by this process): their
 * kernel may cache the name, or its absence, in .snapshots.  Nobody
 * listening: nothing is mounted, nothing cached. */
void snapshot_forget(const char *dir, const int64_t *vols, size_t nv, const char *name)
{
	char *real = realpath(dir, NULL);
	for (size_t i = 0; real && i < nv; i++) {
		char line[300], reply[64];
		snprintf(line, sizeof(line), "forget-snapshot %s", name);
		control_request(real, vols[i], line, reply, sizeof(reply));
	}
	free(real);
}

/* The members named on the command line, or those of the set's newest
 * snapshot.  Exits on a bad name. */
static struct member *set_members(struct index *ix, const char *dir,
				  const struct opts *o, size_t *n)
{
	struct member *m = calloc(o->npos, sizeof(*m));
	if (!m)
		die(1, "out of memory");
	*n = 0;
	if (o->npos > 2) {
		for (int i = 2; i < o->npos; i++)
			find_volume(ix, dir, o->pos[i], &m[(*n)++].vi);
	} else {
		struct set_snap *ss;
		size_t k;
		struct snapshot_info *last = NULL;
		int err = ns_set_list(ix, o->set, &ss, &k);
		if (!err && !k)
			die(EXIT_USAGE, "store %s has no snapshot of set '%s' yet: name its volumes the first time ('tresor snapshot create %s --set %s VOLUME...')",
			    dir, o->set, dir, o->set);
		if (!err)
			err = ns_set_members(ix, o->set, ss[k - 1].name, &last, n);
		if (err)
			die(1, "cannot read set '%s' of store %s: %s", o->set, dir,
			    strerror(-err));
		struct volume_info *vis;
		size_t nv;
		if (ns_volume_list(ix, &vis, &nv))
			die(1, "cannot list the volumes of store %s", dir);
		free(m);
		m = calloc(*n, sizeof(*m));
		if (!m)
			die(1, "out of memory");
		for (size_t i = 0; i < *n; i++)
			for (size_t j = 0; j < nv; j++)
				if (vis[j].id == last[i].vol)
					m[i].vi = vis[j];
		free(vis);
		free(last);
		free(ss);
	}
	for (size_t i = 0; i < *n; i++) {
		m[i].fd = m[i].lfd = -1;
		for (size_t j = 0; j < i; j++)
			if (m[j].vi.id == m[i].vi.id)
				die(EXIT_USAGE, "volume '%s' is named twice in set '%s'",
				    m[i].vi.name, o->set);
		/* A volume is in one set only: its snapshots of another set
		 * would be pruned by two policies and restored as two
		 * instants. */
		struct snapshot_info *sis;
		size_t ns;
		if (ns_snapshot_list(ix, m[i].vi.id, &sis, &ns))
			die(1, "cannot list the snapshots of volume '%s' of store %s",
			    m[i].vi.name, dir);
		for (size_t k = 0; k < ns; k++)
			if (sis[k].set_name[0] && strcmp(sis[k].set_name, o->set))
				die(EXIT_USAGE, "volume '%s' of store %s is in set '%s' (snapshot %s); a volume may be in one set only",
				    m[i].vi.name, dir, sis[k].set_name,
				    sis[k].name);
		free(sis);
	}
	return m;
}

/* Hold member m: its daemon's writes, or its volume lock.  Exits with a
 * message on failure (the holds taken so far end with the process: a
 * daemon releases when its connection closes). */
static void hold_member(const char *dir, const char *real, const char *set,
			struct member *m)
{
	int err = control_hold(real, m->vi.id, SET_FLUSH_MS, &m->fd, &m->epoch);
	if (!err)
		return;
	m->fd = -1;
	if (err == -EROFS)
		die(1, "volume '%s' of store %s is mounted read-only: set '%s' cannot hold it; mount it read-write or leave it out of the set",
		    m->vi.name, dir, set);
	if (err == -ETIMEDOUT)
		die(1, "the daemon of volume '%s' of store %s did not flush within %d s; set '%s' not taken, retry",
		    m->vi.name, dir, SET_FLUSH_MS / 1000, set);
	if (err != -ECONNREFUSED && err != -ENOENT)
		die(1, "the daemon of volume '%s' of store %s refused to hold its writes: %s; set '%s' not taken",
		    m->vi.name, dir, strerror(-err), set);
	/* No daemon answers: hold the volume's lock so none starts now. */
	m->lfd = vfs_volume_lock(dir, m->vi.id, 0);
	if (m->lfd == -EWOULDBLOCK)
		die(1, "volume '%s' of store %s is mounted, but its daemon does not answer; set '%s' not taken: retry or remount",
		    m->vi.name, dir, set);
}

/* Record every member's snapshot in one transaction. */
static int record_set(struct index *ix, const char *set, struct member *m,
		      size_t n, const char *name, int64_t t, int pin, const char *note,
		      int64_t since, struct snapshot_info *sis)
{
	int64_t *vols = calloc(n, sizeof(*vols));
	if (!vols)
		return -ENOMEM;
	int err = index_begin(ix);
	for (size_t i = 0; i < n && !err; i++) {
		vols[i] = m[i].vi.id;
		struct volume_info now;
		err = ns_volume_find(ix, m[i].vi.name, &now);
		/* A daemon that gave up its hold may have written on. */
		if (!err && m[i].fd >= 0 && now.epoch != m[i].epoch)
			err = -ESTALE;
	}
	if (!err)
		err = ns_snapshot_create_set(ix, set, vols, n, name, t, pin, note, sis);
	/* The daemons release by themselves after CONTROL_HOLD_MS: commit
	 * only well before that. */
	if (!err && mono_ms() - since > CONTROL_HOLD_MS / 2)
		err = -ETIMEDOUT;
	crash_point("snapshot-set");	/* rows written, not committed */
	if (!err)
		err = index_commit(ix);
	if (!err)
		crash_point("snapshot-set-committed");	/* daemons still held */
	if (err)
		index_rollback(ix);
	free(vols);
	return err;
}

int snapset_create(struct opts *o, const char *dir, const char *name, int64_t t, int pin)
{
	struct index *ix = open_index(dir);
	size_t n;
	struct member *m = set_members(ix, dir, o, &n);
	char *real = realpath(dir, NULL);
	if (!real)
		die(1, "store %s: %s", dir, strerror(errno));
	for (size_t i = 0; i < n; i++) {
		int err = control_ping(real, m[i].vi.id, SET_PING_MS);
		if (err == -ETIMEDOUT || err == -EIO)
			die(1, "the daemon of volume '%s' of store %s does not answer (%s); set '%s' not taken: retry, or restart that mount",
			    m[i].vi.name, dir, err == -EIO ? "it closed the connection" : "5 s",
			    o->set);
	}
	int64_t since = mono_ms();
	for (size_t i = 0; i < n; i++)
		hold_member(dir, real, o->set, &m[i]);
	struct snapshot_info *sis = calloc(n, sizeof(*sis));
	if (!sis)
		die(1, "out of memory");
	int err = record_set(ix, o->set, m, n, name, t, pin, o->note, since, sis);
	int rerr = 0;
	for (size_t i = 0; i < n; i++) {
		if (m[i].fd >= 0) {
			int e = control_release(m[i].fd, SET_FLUSH_MS);
			if (e && !rerr) {
				rerr = e;
				fprintf(stderr, "tresor: volume '%s': its daemon did not confirm the release: %s; see its log\n",
					m[i].vi.name, strerror(-e));
			}
		}
		if (m[i].lfd >= 0)
			close(m[i].lfd);
	}
	free(real);
	index_close(ix);
	if (!err) {	/* a name the members' kernels may have cached as absent */
		int64_t *vols = calloc(n, sizeof(*vols));
		if (!vols)
			die(1, "out of memory");
		for (size_t i = 0; i < n; i++)
			vols[i] = m[i].vi.id;
		snapshot_forget(dir, vols, n, sis[0].name);
		free(vols);
	}
	if (err == -ESTALE || err == -ETIMEDOUT)
		die(1, "set '%s' of store %s not taken: a daemon stopped holding its writes before the set was recorded; retry",
		    o->set, dir);
	if (err == -EEXIST && name)
		die(1, "a volume of set '%s' of store %s has a snapshot %s already; choose another --name",
		    o->set, dir, name);
	if (err)
		die(1, "cannot snapshot set '%s' of store %s: %s", o->set, dir,
		    strerror(-err));
	if (o->json) {
		printf("{\"set\":");
		json_str(o->set);
		printf(",\"name\":");
		json_str(sis[0].name);
		printf(",\"time_ns\":%lld,\"pinned\":%s,\"volumes\":[", (long long)t,
		       pin ? "true" : "false");
		for (size_t i = 0; i < n; i++) {
			printf("%s", i ? "," : "");
			json_str(m[i].vi.name);
		}
		printf("]}\n");
	} else {
		printf("%s\n", sis[0].name);
	}
	snapshot_retention_note(dir, NULL, o->set, sis[0].name, pin);
	free(sis);
	free(m);
	return rerr ? 1 : 0;
}

/* The name of volume id among vis, or "?". */
static const char *vol_name(const struct volume_info *vis, size_t nv, int64_t id)
{
	for (size_t j = 0; j < nv; j++)
		if (vis[j].id == id)
			return vis[j].name;
	return "?";
}

int snapset_list(struct opts *o, const char *dir)
{
	struct index *ix = open_index(dir);
	struct set_snap *sl;
	size_t k;
	struct volume_info *vis = NULL;
	size_t nv = 0;
	int err = ns_set_list(ix, o->set, &sl, &k);
	if (!err)
		err = ns_volume_list(ix, &vis, &nv);
	if (err)
		die(1, "cannot list set '%s' of store %s: %s", o->set, dir,
		    strerror(-err));
	if (o->json)
		printf("[");
	else
		printf("%-16s %-25s %6s %s\n", "NAME", "TIME", "PINNED", "VOLUMES");
	for (size_t i = 0; i < k; i++) {
		struct snapshot_info *ss;
		size_t n;
		err = ns_set_members(ix, o->set, sl[i].name, &ss, &n);
		if (err)
			die(1, "cannot read snapshot %s of set '%s': %s", sl[i].name,
			    o->set, strerror(-err));
		int pinned = 0;
		for (size_t j = 0; j < n; j++)
			pinned |= ss[j].pinned;
		char when[64];
		cli_iso_time(sl[i].time / 1000000000, when, sizeof(when));
		if (o->json) {
			printf("%s{\"name\":", i ? "," : "");
			json_str(sl[i].name);
			printf(",\"time\":\"%s\",\"time_ns\":%lld,\"pinned\":%s,\"note\":",
			       when, (long long)sl[i].time, pinned ? "true" : "false");
			json_str(ss[0].note);
			printf(",\"volumes\":[");
			for (size_t j = 0; j < n; j++) {
				printf("%s", j ? "," : "");
				json_str(vol_name(vis, nv, ss[j].vol));
			}
			printf("]}");
		} else {
			printf("%-16s %-25s %6s ", sl[i].name, when, pinned ? "yes" : "");
			for (size_t j = 0; j < n; j++)
				printf("%s%s", j ? "," : "", vol_name(vis, nv, ss[j].vol));
			printf("%s%s\n", ss[0].note[0] ? "  marked: " : "", ss[0].note);
		}
		free(ss);
	}
	if (o->json)
		printf("]\n");
	free(sl);
	free(vis);
	index_close(ix);
	return 0;
}

int snapset_pin(struct opts *o, const char *dir, const char *name, int pin)
{
	struct index *ix = open_index(dir);
	struct snapshot_info *ss;
	size_t n;
	int err = ns_set_members(ix, o->set, name, &ss, &n);
	if (err == -ENOENT)
		die(1, "set '%s' of store %s has no snapshot '%s' (see 'tresor snapshot list %s --set %s')",
		    o->set, dir, name, dir, o->set);
	if (!err)
		err = index_begin(ix);
	for (size_t i = 0; i < n && !err; i++)
		err = ns_snapshot_pin(ix, ss[i].id, pin);
	if (!err)
		err = index_commit(ix);
	if (err)
		die(1, "cannot %s snapshot %s of set '%s': %s", pin ? "pin" : "unpin",
		    name, o->set, strerror(-err));
	free(ss);
	index_close(ix);
	printf("%s %s (set %s, %zu volume(s))\n", pin ? "pinned" : "unpinned", name,
	       o->set, n);
	return 0;
}
