/*
 * cmd_snapshot.c - `tresor snapshot create|list|pin|unpin|diff` and
 * `tresor prune` (restore is cmd_restore.c).
 *
 * Snapshot creation goes through the volume's daemon when one serves it
 * (so the snapshot is one instant of what programs see); otherwise it
 * takes the volume's lock and records it with ns_snapshot_create.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include "../fs/control.h"
#include "../chunker/gc.h"
#include "../fs/diff.h"
#include "../fs/prune.h"
#include "../fs/vfs.h"
#include "cli.h"
#include "progress.h"

/* Parse an ISO-8601 time: YYYY-MM-DD[(T| )HH:MM[:SS]][Z|(+|-)HH[:]MM].
 * Without a zone it is local time.  Returns 0 or -EINVAL. */
static int parse_time(const char *s, int64_t *ns)
{
	struct tm tm;
	memset(&tm, 0, sizeof(tm));
	const char *p = strptime(s, "%Y-%m-%d", &tm);
	if (!p)
		return -EINVAL;
	if (*p == 'T' || *p == ' ') {
		const char *q = strptime(p + 1, "%H:%M:%S", &tm);
		if (!q)
			q = strptime(p + 1, "%H:%M", &tm);
		if (!q)
			return -EINVAL;
		p = q;
	}
	/* strptime takes 2025-02-30; mktime would make it March 2nd. */
	static const int mdays[] = { 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
	int y = tm.tm_year + 1900;
	int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
	if (tm.tm_mon < 0 || tm.tm_mon > 11 || tm.tm_mday < 1 ||
	    tm.tm_mday > mdays[tm.tm_mon] || (tm.tm_mon == 1 && !leap && tm.tm_mday > 28) ||
	    tm.tm_hour > 23 || tm.tm_min > 59 || tm.tm_sec > 60)
		return -EINVAL;
	time_t t;
	if (*p == 0) {
		tm.tm_isdst = -1;
		t = mktime(&tm);
	} else {
		long off = 0;
		if (*p == 'Z') {
			p++;
		} else if (*p == '+' || *p == '-') {
			int sign = *p == '-' ? -1 : 1, hh, mm = 0;
			if (sscanf(p + 1, "%2d:%2d", &hh, &mm) < 1 &&
			    sscanf(p + 1, "%2d%2d", &hh, &mm) < 1)
				return -EINVAL;
			off = sign * (hh * 3600L + mm * 60L);
			p += strlen(p);
		}
		if (*p)
			return -EINVAL;
		t = timegm(&tm) - off;
	}
	if (t == (time_t)-1)
		return -EINVAL;
	*ns = (int64_t)t * 1000000000;
	return 0;
}

/* A name a person may give a snapshot (--name): a folder name in
 * .snapshots that Windows (SMB) can show too, one word on a control line,
 * and not restore's "latest". */
static int snapshot_name_ok(const char *s)
{
	size_t n = strlen(s);
	if (!n || n > 127 || *s == '.' || *s == '-' || !strcmp(s, "latest"))
		return 0;
	for (; *s; s++)
		if ((unsigned char)*s <= ' ' || *s == 0x7f || strchr("/\\:*?\"<>|", *s))
			return 0;
	return 1;
}

static int snapshot_create(struct opts *o)
{
	if (o->set ? o->npos < 2 : o->npos != 3)
		die(EXIT_USAGE, "usage: tresor snapshot create STORE VOLUME [--time ISO-8601] [--name NAME] [--scheduled]\n"
		    "       tresor snapshot create STORE --set NAME [VOLUME...] [--time ISO-8601] [--name NAME] [--scheduled]");
	const char *dir = o->pos[1];
	int64_t t;
	if (o->time) {
		if (parse_time(o->time, &t))
			die(EXIT_USAGE, "--time: not an ISO-8601 time like 2026-11-23T02:00:00: %s",
			    o->time);
	} else {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		t = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
	}
	const char *name = o->snap_name;
	if (name && !snapshot_name_ok(name))
		die(EXIT_USAGE, "--name: not a snapshot name: %s (up to 127 bytes; no '/', '\\', ':', '*', '?', '\"', '<', '>', '|', spaces or control characters; not starting with '.' nor '-'; not 'latest')",
		    name);
	int pin = !o->scheduled;
	if (o->set)
		return snapset_create(o, dir, name, t, pin);

	struct index *ix = open_index(dir);
	struct volume_info vi;
	find_volume(ix, dir, o->pos[2], &vi);
	char *real = realpath(dir, NULL);
	char line[300], reply[512], named[128];
	int err = real ? 0 : -errno;
	/* The name by this process's local time (the mount process may run
	 * in another zone), taken exactly by the mount process; chosen again
	 * if another snapshot took it meanwhile. */
	for (int tries = 0; !err; tries++) {
		if (!name)
			err = ns_snapshot_name(ix, &vi.id, 1, t, named, sizeof(named));
		if (err)
			die(1, "cannot name a snapshot of volume '%s' of store %s: %s", vi.name,
			    dir, strerror(-err));
		snprintf(line, sizeof(line), "take-snapshot %lld %d %s", (long long)t, pin,
			 name ? name : named);
		err = control_request(real, vi.id, line, reply, sizeof(reply));
		if (err || name || tries == 3 || strncmp(reply, "error 17 ", 9))
			break;
	}
	free(real);
	if (!err) {
		if (name && !strncmp(reply, "error 17 ", 9))
			die(1, "volume '%s' of store %s has a snapshot %s already; choose another --name",
			    vi.name, dir, name);
		if (strncmp(reply, "ok ", 3))
			die(1, "the daemon of volume '%s' refused the snapshot: %s%s",
			    vi.name, reply, strstr(reply, "unknown request") ?
			    " (it runs an older tresor: remount the volume)" : "");
		/* The mark after the snapshot, in a transaction of its own:
		 * the mount process knows nothing of it. */
		struct snapshot_info si;
		if (o->note && *o->note) {
			err = ns_snapshot_find(ix, vi.id, reply + 3, &si);
			if (!err)
				err = index_begin(ix);
			if (!err)
				err = ns_snapshot_note(ix, si.id, o->note);
			if (!err)
				err = index_commit(ix);
			if (err)
				die(1, "snapshot %s of volume '%s' taken, but cannot be marked: %s",
				    reply + 3, vi.name, strerror(-err));
		}
		index_close(ix);
		printf("%s\n", reply + 3);
		snapshot_retention_note(dir, vi.name, NULL, reply + 3, pin);
		return 0;
	}
	/* A daemon took the request and died before answering: whether the
	 * snapshot was taken is unknown, and one taken here would hold only
	 * the committed state under the same name. */
	if (err == -EIO)
		die(1, "the daemon of volume '%s' of store %s ended during the snapshot; see 'tresor snapshot list' and retry",
		    vi.name, dir);
	/* No daemon answers: hold the volume's lock so none starts now. */
	int lfd = vfs_volume_lock(dir, vi.id, 0);
	if (lfd == -EWOULDBLOCK)
		die(1, "volume '%s' of store %s is mounted, but its daemon does not answer; retry or remount",
		    vi.name, dir);
	struct snapshot_info si;
	err = index_begin(ix);
	if (!err)
		err = ns_snapshot_create(ix, vi.id, name, t, pin, &si);
	if (!err && o->note && *o->note)
		err = ns_snapshot_note(ix, si.id, o->note);
	if (!err)
		err = index_commit(ix);
	if (err == -EEXIST && name)
		die(1, "volume '%s' of store %s has a snapshot %s already; choose another --name",
		    vi.name, dir, name);
	if (err)
		die(1, "cannot snapshot volume '%s' of store %s: %s", vi.name, dir,
		    strerror(-err));
	if (lfd >= 0)
		close(lfd);
	index_close(ix);
	printf("%s\n", si.name);
	snapshot_retention_note(dir, vi.name, NULL, si.name, pin);
	return 0;
}

static int snapshot_list(struct opts *o)
{
	if (o->set && o->npos == 2)
		return snapset_list(o, o->pos[1]);
	if (o->npos != 3)
		die(EXIT_USAGE, "usage: tresor snapshot list STORE VOLUME [--json]\n"
		    "       tresor snapshot list STORE --set NAME [--json]");
	const char *dir = o->pos[1];
	struct index *ix = open_index(dir);
	struct volume_info vi;
	find_volume(ix, dir, o->pos[2], &vi);
	struct snapshot_info *s;
	size_t n;
	int err = ns_snapshot_list(ix, vi.id, &s, &n);
	if (err)
		die(1, "cannot list snapshots of volume '%s' in %s: %s", vi.name,
		    dir, strerror(-err));
	if (o->json)
		printf("[");
	else
		printf("%-16s %-25s %6s %16s %8s %16s\n", "NAME", "TIME", "PINNED",
		       "LOGICAL", "FILES", "ONLY-IN-IT");
	/* s is in epoch order (what "only in it" needs); show by time. */
	size_t *order = malloc((n ? n : 1) * sizeof(*order));
	if (!order)
		die(1, "out of memory");
	for (size_t i = 0; i < n; i++)
		order[i] = i;
	for (size_t i = 1; i < n; i++)
		for (size_t j = i; j > 0 && s[order[j - 1]].time > s[order[j]].time; j--) {
			size_t tmp = order[j];
			order[j] = order[j - 1];
			order[j - 1] = tmp;
		}
	for (size_t oi = 0; oi < n; oi++) {
		size_t i = order[oi];
		uint64_t bytes = 0, files = 0, excl = 0;
		int64_t prev = i ? s[i - 1].epoch : 0;
		int64_t next = i + 1 < n ? s[i + 1].epoch : EPOCH_ALIVE - 1;
		err = ns_view_size(ix, vi.id, s[i].epoch, &bytes, &files);
		if (!err)
			err = ns_exclusive_bytes(ix, vi.id, prev, s[i].epoch,
						    next, &excl);
		if (err)
			die(1, "cannot size snapshot %s: %s", s[i].name, strerror(-err));
		char when[64];
		cli_iso_time(s[i].time / 1000000000, when, sizeof(when));
		if (o->json) {
			printf("%s{\"name\":", oi ? "," : "");
			json_str(s[i].name);
			printf(",\"time\":\"%s\",\"time_ns\":%lld,\"pinned\":%s,"
			       "\"logical_bytes\":%llu,\"files\":%llu,\"exclusive_bytes\":%llu,\"set\":",
			       when, (long long)s[i].time, s[i].pinned ? "true" : "false",
			       (unsigned long long)bytes, (unsigned long long)files,
			       (unsigned long long)excl);
			if (s[i].set_name[0])
				json_str(s[i].set_name);
			else
				printf("null");
			printf(",\"note\":");
			json_str(s[i].note);
			printf("}");
		} else {
			printf("%-16s %-25s %6s %16llu %8llu %16llu%s%s%s%s\n", s[i].name,
			       when, s[i].pinned ? "yes" : "", (unsigned long long)bytes,
			       (unsigned long long)files, (unsigned long long)excl,
			       s[i].set_name[0] ? "  set " : "", s[i].set_name,
			       s[i].note[0] ? "  marked: " : "", s[i].note);
		}
	}
	if (o->json)
		printf("]\n");
	free(order);
	free(s);
	index_close(ix);
	return 0;
}

static int snapshot_pin(struct opts *o, int pin)
{
	if (o->set && o->npos == 3)
		return snapset_pin(o, o->pos[1], o->pos[2], pin);
	if (o->npos != 4)
		die(EXIT_USAGE, "usage: tresor snapshot %s STORE VOLUME NAME\n"
		    "       tresor snapshot %s STORE --set SET NAME",
		    pin ? "pin" : "unpin", pin ? "pin" : "unpin");
	const char *dir = o->pos[1];
	struct index *ix = open_index(dir);
	struct volume_info vi;
	struct snapshot_info si;
	find_volume(ix, dir, o->pos[2], &vi);
	find_snapshot(ix, dir, &vi, o->pos[3], &si);
	int err = index_begin(ix);
	if (!err)
		err = ns_snapshot_pin(ix, si.id, pin);
	if (!err)
		err = index_commit(ix);
	if (err)
		die(1, "cannot %s snapshot %s: %s", pin ? "pin" : "unpin", si.name,
		    strerror(-err));
	index_close(ix);
	printf("%s %s\n", pin ? "pinned" : "unpinned", si.name);
	return 0;
}

static int snapshot_diff(struct opts *o)
{
	if (o->npos != 5)
		die(EXIT_USAGE, "usage: tresor snapshot diff STORE VOLUME OLD NEW [--json]");
	const char *dir = o->pos[1];
	struct index *ix = open_index(dir);
	struct volume_info vi;
	struct snapshot_info sa, sb;
	find_volume(ix, dir, o->pos[2], &vi);
	find_snapshot(ix, dir, &vi, o->pos[3], &sa);
	find_snapshot(ix, dir, &vi, o->pos[4], &sb);
	char **lines;
	size_t nl;
	int err = diff_views(ix, vi.id, sa.epoch, sb.epoch, &lines, &nl);
	if (err)
		die(1, "cannot compare snapshots %s and %s of volume '%s' in %s: %s",
		    sa.name, sb.name, vi.name, dir, strerror(-err));
	if (o->json)
		printf("[");
	for (size_t i = 0; i < nl; i++) {
		if (o->json) {
			const char *kind = lines[i][0] == '+' ? "added" :
					   lines[i][0] == '-' ? "removed" : "changed";
			printf("%s{\"change\":\"%s\",\"path\":", i ? "," : "", kind);
			json_str(lines[i] + 2);
			printf("}");
		} else {
			printf("%s\n", lines[i]);
		}
		free(lines[i]);
	}
	if (o->json)
		printf("]\n");
	free(lines);
	index_close(ix);
	return 0;
}

int cmd_snapshot(struct opts *o)
{
	const char *sub = o->npos ? o->pos[0] : "";
	if (!strcmp(sub, "create"))
		return snapshot_create(o);
	if (!strcmp(sub, "list"))
		return snapshot_list(o);
	if (!strcmp(sub, "pin"))
		return snapshot_pin(o, 1);
	if (!strcmp(sub, "unpin"))
		return snapshot_pin(o, 0);
	if (!strcmp(sub, "diff"))
		return snapshot_diff(o);
	die(EXIT_USAGE, "usage: tresor snapshot create|list|pin|unpin|diff STORE VOLUME ...");
}

/* The volumes whose snapshots p removes: vi's, or every member of the
 * removed set snapshots (read before they are deleted). */
static int64_t *prune_volumes(struct index *ix, const struct prune_plan *p,
			      const struct volume_info *vi, size_t *nv)
{
	int64_t *v = malloc(sizeof(*v));
	size_t n = 0, cap = 1;
	if (!v)
		die(1, "out of memory");
	if (!p->set) {
		v[n++] = vi->id;
		*nv = n;
		return v;
	}
	for (size_t i = 0; i < p->n; i++) {
		struct snapshot_info *ss;
		size_t m;
		if (p->rs[i].keep || ns_set_members(ix, p->set, p->snaps[i].name, &ss, &m))
			continue;
		for (size_t k = 0; k < m; k++) {
			size_t j = 0;
			while (j < n && v[j] != ss[k].vol)
				j++;
			if (j < n)
				continue;
			if (n == cap && !(v = realloc(v, (cap *= 2) * sizeof(*v))))
				die(1, "out of memory");
			v[n++] = ss[k].vol;
		}
		free(ss);
	}
	*nv = n;
	return v;
}

int cmd_prune(struct opts *o)
{
	if (o->npos != (o->set ? 1 : 2))
		die(EXIT_USAGE, "usage: tresor prune STORE VOLUME --keep-daily N ... [--dry-run]\n"
		    "       tresor prune STORE --set SET --keep-daily N ... [--dry-run]");
	const char *dir = o->pos[0];
	struct index *ix = open_index(dir);
	struct volume_info vi;
	struct prune_plan plan;
	int err;
	/* What the messages name: "volume 'x'" or "set 'x'". */
	char what[300];
	if (o->set) {
		snprintf(what, sizeof(what), "set '%s'", o->set);
		err = prune_set_plan(ix, o->set, &o->keep, &plan);
	} else {
		find_volume(ix, dir, o->pos[1], &vi);
		snprintf(what, sizeof(what), "volume '%s'", vi.name);
		err = prune_plan(ix, vi.id, &o->keep, &plan);
	}
	if (err == -EINVAL)
		die(EXIT_USAGE, "prune needs a policy that keeps something, e.g. --keep-daily 30 --keep-monthly 12");
	if (err)
		die(1, "cannot apply the policy to the snapshots of %s in %s: %s",
		    what, dir, strerror(-err));
	const struct retention_snap *rs = plan.rs;
	size_t n = plan.n, removed = plan.removed;
	if (o->json)
		printf("{\"dry_run\":%s,\"snapshots\":[", o->dry_run ? "true" : "false");
	for (size_t i = 0; i < n; i++) {
		if (o->json) {
			printf("%s{\"name\":", i ? "," : "");
			json_str(rs[i].name);
			printf(",\"keep\":%s,\"reasons\":", rs[i].keep ? "true" : "false");
			json_str(rs[i].reasons);
			printf("}");
		} else {
			printf("%s %s%s%s%s\n", rs[i].keep ? "keep  " : "remove",
			       rs[i].name, *rs[i].reasons ? " (" : "",
			       rs[i].reasons, *rs[i].reasons ? ")" : "");
		}
	}
	struct gc_result gr = { 0 };
	if (!o->dry_run) {
		size_t nv;
		int64_t *vols = prune_volumes(ix, &plan, &vi, &nv);
		index_close(ix);
		ix = NULL;
		struct store *st = open_store(o, dir);
		struct progress prog;
		progress_start(&prog, "prune: removing snapshots", removed);
		prog.unit = "snapshots";
		err = prune_delete(st->ix, &plan, progress_cb, &prog);
		progress_end(&prog);
		/* A mounted volume's kernel may keep the deleted names in
		 * .snapshots: its daemon tells it to forget them (nobody
		 * listening: nothing is mounted, nothing cached). */
		for (size_t i = 0; i < n; i++)
			if (!rs[i].keep)
				snapshot_forget(dir, vols, nv, rs[i].name);
		free(vols);
		/* Not needed past here; freed now so that no exit below leaves
		 * them to LeakSanitizer. */
		prune_plan_free(&plan);
		if (err)
			die(1, "prune of %s in %s stopped: %s; rerun it to finish",
			    what, dir, strerror(-err));
		if (prog.on && !o->json)
			fprintf(stderr, "prune: reclaiming space...\r");
		err = store_gc(st, &gr);
		if (prog.on && !o->json)
			fprintf(stderr, "\033[K");
		int e2 = store_close(st);
		if (err == -EBUSY)
			die(1, "another prune runs on store %s; snapshots were removed, space comes back at the next prune",
			    dir);
		if (err == -ENOENT && *gr.failed)
			die(1, "space reclaim in store %s stopped: pack %s is missing; run 'tresor check %s', then 'tresor repair %s --from REMOTE' to bring it back, and rerun prune",
			    dir, gr.failed, dir, dir);
		if (err || e2)
			die(1, "space reclaim in store %s stopped: %s; rerun prune to finish",
			    dir, strerror(-(err ? err : e2)));
	}
	if (o->json)
		printf("],\"removed\":%zu,\"packs_deleted\":%llu,\"packs_rewritten\":%llu,"
		       "\"packs_merged\":%llu,"
		       "\"bytes_freed\":%llu,\"packs_not_local\":%llu,\"bytes_not_local\":%llu}\n",
		       removed, (unsigned long long)gr.packs_deleted,
		       (unsigned long long)gr.packs_rewritten, (unsigned long long)gr.packs_merged,
		       (unsigned long long)gr.bytes_freed,
		       (unsigned long long)gr.packs_not_local,
		       (unsigned long long)gr.bytes_not_local);
	else
		printf("%s %zu snapshot(s); %llu pack(s) deleted, %llu rewritten, %llu bytes freed\n",
		       o->dry_run ? "would remove" : "removed", removed,
		       (unsigned long long)gr.packs_deleted,
		       (unsigned long long)gr.packs_rewritten,
		       (unsigned long long)gr.bytes_freed);
	if (!o->json && gr.packs_merged)
		printf("merged %llu small pack(s) into fewer (each push leaves one; the next push replaces them on the remote)\n",
		       (unsigned long long)gr.packs_merged);
	if (!o->json && gr.packs_not_local)
		printf("kept %llu pack(s) holding %llu dead bytes: this lazy store does not hold them yet; 'tresor recover URL %s --full', then prune, reclaims them\n",
		       (unsigned long long)gr.packs_not_local,
		       (unsigned long long)gr.bytes_not_local, dir);
	prune_plan_free(&plan);
	if (ix)
		index_close(ix);
	return 0;
}
