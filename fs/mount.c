/*
 * mount.c - mounting a volume: tresor's own mount options, the FUSE
 * session, the fork into the background, the serve loop, and the
 * composition root's hooks around it (vfs_mount_main, vfs.h).
 */
#include <errno.h>
#include <malloc.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <limits.h>

#include <signal.h>
#include <unistd.h>
#include <linux/fuse.h>

#include "control.h"
#include "fuse_int.h"
#include "../chunker/util.h"

/* The kernel's "resend what you read and did not answer" (fuse.h 7.40,
 * newer than the headers Debian 12 builds with). */
#define MOUNT_NOTIFY_RESEND 7

/* tresor's own mount options; the rest go to FUSE. */
struct mount_opts {
	int readonly, list_snapshots, mt, workers, writeback, fill, noacl, nonempty;
	double cache_timeout;
	char fetch_remote[64];
};

/* Take our options out of opts (comma-separated), add the rest to args. */
static int mount_opts_parse(const char *opts, struct mount_opts *mo,
			    struct fuse_args *args)
{
	memset(mo, 0, sizeof(*mo));
	mo->workers = 2;
	mo->cache_timeout = CACHE_TIMEOUT_DEFAULT;
	if (!opts || !*opts)
		return 0;
	static const struct { const char *name; size_t off; } flags[] = {
		{ "list_snapshots", offsetof(struct mount_opts, list_snapshots) },
		{ "mt", offsetof(struct mount_opts, mt) },
		{ "writeback", offsetof(struct mount_opts, writeback) },
		{ "noacl", offsetof(struct mount_opts, noacl) },	/* ACL xattrs refused */
		{ "fill", offsetof(struct mount_opts, fill) },	/* fetch every pack not here yet */
		/* mount over files (hidden while mounted); FUSE 3 has no such
		 * option and would always do it */
		{ "nonempty", offsetof(struct mount_opts, nonempty) },
	};
	char *copy = strdup(opts), *save = NULL;
	char *rest = calloc(1, strlen(opts) + 1);
	if (!copy || !rest) {
		free(copy);
		free(rest);
		return -ENOMEM;
	}
	for (char *o = strtok_r(copy, ",", &save); o; o = strtok_r(NULL, ",", &save)) {
		size_t f = 0;
		while (f < sizeof(flags) / sizeof(flags[0]) && strcmp(o, flags[f].name))
			f++;
		if (f < sizeof(flags) / sizeof(flags[0])) {
			*(int *)((char *)mo + flags[f].off) = 1;
			continue;
		}
		if (!strcmp(o, "allow_unfetchable"))
			continue;	/* tools/ checked the remote */
		if (!strncmp(o, "remote=", 7)) {
			snprintf(mo->fetch_remote, sizeof(mo->fetch_remote), "%s", o + 7);
			continue;
		}
		if (!strncmp(o, "cache_timeout=", 14)) {
			/* Seconds the kernel may keep entries and attributes
			 * of the live tree; 0: ask every time. */
			char *end;
			double t = strtod(o + 14, &end);
			if (*end || t < 0 || t > 86400) {
				tlog(LOG_ERR, "mount option %s: seconds from 0 to 86400", o);
				free(copy);
				free(rest);
				return -EINVAL;
			}
			mo->cache_timeout = t;
			continue;
		}
		if (!strncmp(o, "workers=", 8)) {
			mo->workers = atoi(o + 8);
			if (mo->workers < 0 || mo->workers > PIPE_MAX_WORKERS)
				mo->workers = 2;
			continue;
		}
		if (!strcmp(o, "ro"))
			mo->readonly = 1;	/* and FUSE's too */
		if (*rest)
			strcat(rest, ",");
		strcat(rest, o);
	}
	if (*rest) {
		fuse_opt_add_arg(args, "-o");
		fuse_opt_add_arg(args, rest);
	}
	free(copy);
	free(rest);
	return 0;
}

void vfs_mount_source(const char *dir, const char *volume, char *out, size_t size)
{
	char real[PATH_MAX];
	snprintf(out, size, "%s#%s", realpath(dir, real) ? real : dir, volume);
}

/* mountinfo's \ooo escapes (space, tab, newline, backslash) undone. */
static void unoctal(const char *in, char *out, size_t size)
{
	size_t j = 0;
	for (size_t i = 0; in[i] && j + 1 < size; i++) {
		if (in[i] == '\\' && in[i + 1] >= '0' && in[i + 1] <= '7' &&
		    in[i + 2] >= '0' && in[i + 2] <= '7' && in[i + 3] >= '0' && in[i + 3] <= '7') {
			out[j++] = (char)((in[i + 1] - '0') * 64 + (in[i + 2] - '0') * 8 +
					  (in[i + 3] - '0'));
			i += 3;
		} else {
			out[j++] = in[i];
		}
	}
	out[j] = 0;
}

int vfs_mounted_at(const char *mountpoint, char *src, size_t size)
{
	char real[PATH_MAX];
	if (!realpath(mountpoint, real))
		snprintf(real, sizeof(real), "%s", mountpoint);
	return vfs_mounted_at_path(real, src, size);
}

int vfs_mounted_at_path(const char *real, char *src, size_t size)
{
	FILE *f = fopen("/proc/self/mountinfo", "r");
	if (!f)
		return 0;
	char line[3 * PATH_MAX], mp[PATH_MAX], un[PATH_MAX], type[64], source[PATH_MAX];
	int found = 0;
	while (fgets(line, sizeof(line), f)) {
		/* id parent maj:min root MOUNTPOINT opts ... - fstype source */
		const char *dash = strstr(line, " - ");
		if (!dash || sscanf(line, "%*s %*s %*s %*s %4095s", mp) != 1 ||
		    sscanf(dash + 3, "%63s %4095s", type, source) != 2)
			continue;
		unoctal(mp, un, sizeof(un));
		if (strcmp(un, real))
			continue;
		/* the last mount on it is the one seen: keep reading */
		found = !strcmp(type, "fuse.tresor");
		if (found && src)
			unoctal(source, src, size);
	}
	fclose(f);
	return found;
}

/* 1 if dir holds any entry (besides . and ..). */
static int dir_nonempty(const char *dir)
{
	DIR *d = opendir(dir);
	if (!d)
		return 0;
	struct dirent *e;
	int any = 0;
	while (!any && (e = readdir(d)))
		any = strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
	closedir(d);
	return any;
}

/* "fsname=SOURCE" with FUSE's option separators escaped. */
static void fsname_opt(const char *source, char *out, size_t size)
{
	size_t n = snprintf(out, size, "fsname=");
	for (const char *c = source; *c && n + 3 < size; c++) {
		if (*c == ',' || *c == '\\')
			out[n++] = '\\';
		out[n++] = *c;
	}
	out[n] = 0;
	snprintf(out + n, size - n, ",subtype=tresor");
}

/* The connection's first request, INIT, read and answered here rather
 * than in the loop, so its bytes can go to the keeper (hooks). */
static int mount_serve_init(struct fuse_session *se, const struct vfs_mount_hooks *hooks)
{
	struct fuse_buf fbuf = { .mem = NULL };
	int res;
	do
		res = fuse_session_receive_buf(se, &fbuf);
	while (res == -EINTR && !fuse_session_exited(se));
	if (res <= 0) {
		free(fbuf.mem);
		return fuse_session_exited(se) ? 0 : res ? res : -ENOTCONN;
	}
	const struct fuse_in_header *in = fbuf.mem;
	int is_init = (size_t)res >= sizeof(*in) && in->opcode == FUSE_INIT;
	size_t len = (size_t)res;
	void *copy = is_init ? malloc(len) : NULL;
	if (copy)
		memcpy(copy, fbuf.mem, len);
	fbuf.size = len;
	fuse_session_process_buf(se, &fbuf);
	free(fbuf.mem);
	if (copy && hooks && hooks->connected && !fuse_session_exited(se))
		hooks->connected(fuse_session_fd(se), copy, len, hooks->arg);
	free(copy);
	return 0;
}

/*
 * Take over a connection an earlier process answered INIT on: replay its
 * INIT (for libfuse's state and ours; the reply, to an id the kernel does
 * not know, is refused with ENOENT, which libfuse ignores), then ask the
 * kernel to resend the requests the earlier process read but never
 * answered (FUSE_NOTIFY_RESEND, Linux 6.9; older kernels refuse it and
 * those requests wait until they are interrupted).
 */
static int mount_replay_init(struct fuse_session *se, const void *init, size_t len)
{
	struct fuse_in_header in;
	if (len < sizeof(in))
		return -EINVAL;
	memcpy(&in, init, sizeof(in));
	if (in.opcode != FUSE_INIT || in.len != len)
		return -EINVAL;
	char *copy = malloc(len);
	if (!copy)
		return -ENOMEM;
	memcpy(copy, init, len);
	in.unique = 1;	/* kernel ids are even: never one in flight */
	memcpy(copy, &in, sizeof(in));
	struct fuse_buf fbuf = { .mem = copy, .size = len };
	fuse_session_process_buf(se, &fbuf);
	free(copy);
	if (fuse_session_exited(se))
		return -EPROTO;
	struct fuse_out_header resend = { .len = sizeof(resend),
					  .error = MOUNT_NOTIFY_RESEND, .unique = 0 };
	if (write(fuse_session_fd(se), &resend, sizeof(resend)) != sizeof(resend))
		tlog(LOG_INFO, "requests in flight at the handover are not resent (%s); they fail when interrupted",
		     strerror(errno));
	return 0;
}

int vfs_mount_main(struct store *st, const char *volume,
		   const char *mountpoint, const char *opts, int foreground,
		   const struct vfs_mount_hooks *hooks)
{
	char fsname[2 * PATH_MAX + 200];
	/* Chunk-sized buffers come and go at every write and read: served
	 * from the heap they are reused, served by mmap each one costs page
	 * faults and zeroing (a third of the write path's time). */
	mallopt(M_MMAP_THRESHOLD, 64 << 20);
	mallopt(M_ARENA_MAX, 2);
	mallopt(M_TRIM_THRESHOLD, 64 << 20);
	char source[PATH_MAX + 80];
	vfs_mount_source(st->dir, volume, source, sizeof(source));
	fsname_opt(source, fsname, sizeof(fsname));
	struct fuse_args args = FUSE_ARGS_INIT(0, NULL);
	fuse_opt_add_arg(&args, "tresor");
	fuse_opt_add_arg(&args, "-o");
	fuse_opt_add_arg(&args, "default_permissions");
	fuse_opt_add_arg(&args, "-o");
	fuse_opt_add_arg(&args, fsname);
	struct mount_opts mo;
	int err = mount_opts_parse(opts, &mo, &args);
	int readonly = mo.readonly;
	int adopt = hooks && hooks->adopt_init_len > 0, detached = 0;
	struct vfs v;
	if (!err)
		err = vfs_open(&v, st, volume, readonly, adopt);
	if (err) {
		fuse_opt_free_args(&args);
		return err;
	}
	v.list_snapshots = mo.list_snapshots;
	v.nworkers_wanted = mo.workers;
	v.writeback = mo.writeback;
	v.attr_timeout = v.entry_timeout = mo.cache_timeout;
	v.noacl = mo.noacl;
	v.fill = mo.fill;
	snprintf(v.fetch_remote, sizeof(v.fetch_remote), "%s", mo.fetch_remote);
	/* An adopted mount answers nobody until this process serves it:
	 * realpath() of its root would wait for that (the keeper passes the
	 * path as mounted). */
	v.mountpoint = adopt ? strdup(mountpoint) : realpath(mountpoint, NULL);
	v.fh_gen = hooks && hooks->fh_gen ? hooks->fh_gen & 0xffff : 1;
	v.adopted_crash = adopt && hooks->adopt_crashed;
	err = -EIO;
	struct fuse_lowlevel_ops timed;
	struct fuse_session *se = fuse_session_new(&args, fuse_timed_ops(vfs_fuse_ops(), &timed, &v),
						   sizeof(timed), &v);
	fuse_opt_free_args(&args);
	if (!se)
		goto out;
	v.se = se;	/* for the control thread's notify_inval_* */
	if (fuse_set_signal_handlers(se))
		goto out_session;
	/* SIGUSR2 ends the loop as SIGTERM does (libfuse's handler; the loop
	 * returns the signal), but leaves the mount to the keeper. */
	struct sigaction term, usr2_before;
	sigaction(SIGTERM, NULL, &term);
	sigaction(SIGUSR2, &term, &usr2_before);
	if (adopt) {
		/* libfuse serves a descriptor named /dev/fd/N as is. */
		char devfd[32];
		snprintf(devfd, sizeof(devfd), "/dev/fd/%d", hooks->adopt_fd);
		if (fuse_session_mount(se, devfd)) {
			err = -ENOTCONN;
			goto out_signals;
		}
	} else {
		/* Mounting over files hides them (and an app writing there
		 * would lose track of them): only when asked. */
		if (!mo.nonempty && dir_nonempty(mountpoint)) {
			err = -ENOTEMPTY;
			goto out_signals;
		}
		if (fuse_session_mount(se, mountpoint)) {
			err = -ENOTCONN;
			goto out_signals;
		}
	}
	/* Sequential reads then come in 1 MiB requests, not 128 KiB ones
	 * (about 15 % faster cold reads here); without root it stays.  (An
	 * adopted mount keeps what its first process set.) */
	if (!adopt && v.mountpoint && mount_set_readahead(v.mountpoint, 1024))
		tlog(LOG_DEBUG, "volume %s: read-ahead stays at the kernel's default",
		     volume);
	/* An SQLite connection must not cross fork(): its POSIX locks stay
	 * with the parent, and the child's view of the WAL goes stale. */
	if (!foreground) {
		index_close(st->ix);
		st->ix = NULL;
	}
	fuse_daemonize(foreground);
	if (!foreground) {
		err = store_open_index(st);
		if (err) {
			tlog(LOG_ERR, "store %s: cannot reopen the index: %s",
			     st->dir, strerror(-err));
			goto out_unmount;
		}
	}
	if (hooks && hooks->started)
		hooks->started(&v, hooks->arg);
	err = vfs_start_committer(&v);
	if (!err) {
		/* Read-only mounts serve ping and opstats only; a second
		 * read-only mount of the volume goes without. */
		int cerr = control_start(&v, &v.control);
		if (cerr && !(readonly && cerr == -EADDRINUSE))
			err = cerr;
	}
	if (err)
		goto out_unmount;
	err = adopt ? mount_replay_init(se, hooks->adopt_init, hooks->adopt_init_len)
		    : mount_serve_init(se, hooks);
	if (err)
		goto out_unmount;
	struct fuse_loop_config cfg = { .clone_fd = 0, .max_idle_threads = 8 };
	/* One thread reads FUSE requests: on two cores it beat a pool of
	 * them 3x on small files and 1.6x on streaming writes, since the CPU
	 * work runs in the pipeline's workers anyway.  -o mt for a pool. */
	err = mo.mt ? fuse_session_loop_mt(se, &cfg) : fuse_session_loop(se);
	detached = err == SIGUSR2;
	err = err < 0 ? err : 0;
out_unmount:
	defer_stop(&v);
	control_stop(v.control);
	v.control = NULL;
	v.se = NULL;
	/* libfuse unmounts what it mounted; an adopted mount is unmounted by
	 * the caller (it has no mount point in the session). */
	if (!detached)
		fuse_session_unmount(se);
	if (detached)
		tlog(LOG_INFO, "volume %s: detached from %s; the mount stays for the next process",
		     volume, mountpoint);
	if (!err && detached)
		err = VFS_DETACHED;
out_signals:
	sigaction(SIGUSR2, &usr2_before, NULL);
	fuse_remove_signal_handlers(se);
out_session:
	fuse_session_destroy(se);
out:;
	snapfile_release_all(&v);	/* no request runs any more */
	if (hooks && hooks->stopping)
		hooks->stopping(&v, hooks->arg);
	int e2 = vfs_close(&v);
	if (hooks && hooks->closed)
		hooks->closed(&v, hooks->arg);
	free(v.mountpoint);
	return err ? err : e2;
}
