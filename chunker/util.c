/*
 * util.c - logging, hex, careful I/O, secret wiping and the torture
 * test's crash points, for every module.
 *
 * Owns process-wide mutable state: the log threshold and the armed crash
 * point (TRESOR_CRASH_AT, read once).  Everything else here is stateless.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include "buf.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* read_file is for small files (keys, config); refuse anything bigger so a
 * wrong path cannot make us swallow a huge file. */
#define READ_FILE_MAX (64u << 20)

/*
 * The log threshold.  -1 means "not decided yet": the first tlog reads
 * TRESOR_LOG, unless log_set_level got there first.  Atomic so threads
 * may log while the daemon changes the level.
 */
static atomic_int log_threshold = -1;

static const char *const level_names[] = {
	[LOG_ERR] = "error",
	[LOG_WARN] = "warn",
	[LOG_INFO] = "info",
	[LOG_DEBUG] = "debug",
};

/*
 * Decide the threshold from the environment once.  A race between two
 * first callers is harmless: both compute the same value, and a value set
 * by log_set_level in the meantime wins because the exchange only
 * replaces -1.
 */
static int log_get_threshold(void)
{
	int v = atomic_load_explicit(&log_threshold, memory_order_relaxed);
	const char *env;
	int want = LOG_INFO;
	int expect = -1;

	if (v >= 0)
		return v;
	env = getenv("TRESOR_LOG");
	if (env) {
		for (int i = LOG_ERR; i <= LOG_DEBUG; i++)
			if (!strcasecmp(env, level_names[i]))
				want = i;
	}
	atomic_compare_exchange_strong(&log_threshold, &expect, want);
	return atomic_load_explicit(&log_threshold, memory_order_relaxed);
}

void log_set_level(enum log_level level)
{
	if ((int)level < LOG_ERR)
		level = LOG_ERR;
	if (level > LOG_DEBUG)
		level = LOG_DEBUG;
	atomic_store(&log_threshold, (int)level);
}

void log_stamp(char *buf, size_t size)
{
	const char *on = getenv("TRESOR_LOG_TIME");
	struct timespec ts;
	struct tm tm;
	char sec[32];

	if (!size)
		return;
	buf[0] = 0;
	if (!on || strcmp(on, "1") || clock_gettime(CLOCK_REALTIME, &ts) ||
	    !gmtime_r(&ts.tv_sec, &tm))
		return;
	strftime(sec, sizeof(sec), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf, size, "%s.%03ldZ ", sec, ts.tv_nsec / 1000000);
}

/*
 * Format into a local buffer and emit the line with one stdio call, so
 * lines from different threads do not interleave.  errno is preserved:
 * callers often log on an error path and then return -errno.
 */
void tlog(enum log_level level, const char *fmt, ...)
{
	char msg[1024], stamp[40];
	va_list ap;
	size_t n;
	int saved = errno;

	if ((int)level < LOG_ERR || level > LOG_DEBUG)
		level = LOG_ERR;
	if ((int)level > log_get_threshold())
		goto out;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	/* Callers sometimes end the message with a newline; we add our own. */
	n = strlen(msg);
	while (n && msg[n - 1] == '\n')
		msg[--n] = '\0';
	log_stamp(stamp, sizeof(stamp));
	fprintf(stderr, "%stresor: %s: %s\n", stamp, level_names[level], msg);
out:
	errno = saved;
}

/*
 * Crash points.  The armed name and countdown are process-wide state like
 * the log threshold: decided once (pthread_once) from the environment,
 * after which the countdown only goes down.  crash_armed: -1 not decided
 * yet, 0 not armed, 1 armed (stored with release after crash_name is
 * written, loaded with acquire before it is read).
 */
static atomic_int crash_armed = -1;
static char crash_name[64];
static atomic_long crash_countdown;
static pthread_once_t crash_once = PTHREAD_ONCE_INIT;

static void crash_decide(void)
{
	const char *env = getenv("TRESOR_CRASH_AT");
	long n = 1;

	if (env && *env && strlen(env) < sizeof(crash_name)) {
		const char *colon = strchr(env, ':');
		size_t len = colon ? (size_t)(colon - env) : strlen(env);

		memcpy(crash_name, env, len);
		crash_name[len] = '\0';
		if (colon)
			n = strtol(colon + 1, NULL, 10);
		atomic_store(&crash_countdown, n > 0 ? n : 1);
		atomic_store_explicit(&crash_armed, 1, memory_order_release);
	} else {
		atomic_store_explicit(&crash_armed, 0, memory_order_release);
	}
}

void crash_point(const char *name)
{
	int armed = atomic_load_explicit(&crash_armed, memory_order_acquire);

	if (armed == 0)
		return;
	if (armed < 0) {
		pthread_once(&crash_once, crash_decide);
		if (atomic_load_explicit(&crash_armed, memory_order_acquire) == 0)
			return;
	}
	if (strcmp(name, crash_name))
		return;
	if (atomic_fetch_sub(&crash_countdown, 1) != 1)
		return;
	fprintf(stderr, "tresor: crash point %s reached: SIGKILL\n", name);
	kill(getpid(), SIGKILL);
	_exit(137);	/* not reached */
}

void hex_encode(const uint8_t *in, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[in[i] >> 4];
		out[2 * i + 1] = digits[in[i] & 0x0f];
	}
	out[2 * n] = '\0';
}

static int hex_val(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/*
 * Both cases are accepted.  Only the first 2n characters are looked at,
 * so a caller may decode the hex prefix of a longer name ("<hex>.pack").
 * The input is checked in full before out is touched, so out is never
 * left half-written.
 */
int hex_decode(const char *in, uint8_t *out, size_t n)
{
	for (size_t i = 0; i < 2 * n; i++)
		if (hex_val(in[i]) < 0)	/* also stops at a NUL */
			return -EINVAL;
	for (size_t i = 0; i < n; i++)
		out[i] = (uint8_t)(hex_val(in[2 * i]) << 4 |
				   hex_val(in[2 * i + 1]));
	return 0;
}

/* Loop over short reads and EINTR; hitting end of file is -EIO because
 * every caller knows how many bytes must be there. */
int pread_full(int fd, void *buf, size_t len, off_t off)
{
	uint8_t *p = buf;

	while (len) {
		ssize_t r = pread(fd, p, len, off);

		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (r == 0)
			return -EIO;
		p += r;
		len -= (size_t)r;
		off += r;
	}
	return 0;
}

/* Loop over short writes (a full disk shows up as one, then ENOSPC). */
int pwrite_full(int fd, const void *buf, size_t len, off_t off)
{
	const uint8_t *p = buf;

	while (len) {
		ssize_t r = pwrite(fd, p, len, off);

		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (r == 0)
			return -EIO;
		p += r;
		len -= (size_t)r;
		off += r;
	}
	return 0;
}

/*
 * Write path.tmp.<pid>, fsync it, rename it over path and fsync the
 * directory, so a crash leaves either the old or the new file, never a
 * torn one.  The mode is applied with fchmod so the umask and a stale
 * temporary from an earlier crash cannot change it.
 */
int write_file_atomic(const char *path, const void *buf, size_t len,
		      mode_t mode)
{
	char *tmp;
	int fd, ret;

	if (asprintf(&tmp, "%s.tmp.%ld", path, (long)getpid()) < 0)
		return -ENOMEM;
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC,
		  mode);
	if (fd < 0) {
		ret = -errno;
		free(tmp);
		return ret;
	}
	ret = fchmod(fd, mode) ? -errno : 0;
	if (!ret)
		ret = pwrite_full(fd, buf, len, 0);
	if (!ret && fsync(fd))
		ret = -errno;
	if (close(fd) && !ret)
		ret = -errno;
	if (!ret && rename(tmp, path))
		ret = -errno;
	if (ret)
		unlink(tmp);
	else
		ret = fsync_parent_dir(path);
	free(tmp);
	return ret;
}

/*
 * Read until end of file rather than trusting st_size alone, so a file
 * that changes under us gives its real contents.  The buffer gets one
 * spare byte set to NUL (not counted in *len) so text files can be used
 * as C strings.
 */
int secret_file_check(const char *path, const char *what, char *why, size_t whysize)
{
	struct stat st;

	if (stat(path, &st) < 0) {
		int e = errno;

		snprintf(why, whysize, "%s %s: %s", what, path, strerror(e));
		return -e;
	}
	if (!S_ISREG(st.st_mode)) {
		snprintf(why, whysize, "%s %s is not a regular file", what, path);
		return -EINVAL;
	}
	if (st.st_mode & 077) {
		snprintf(why, whysize, "%s %s is readable by others: chmod 600 %s (its mode is %04o)",
			 what, path, path, (unsigned)(st.st_mode & 07777));
		return -EACCES;
	}
	/* Caught here, not at first use (chmod 000, another owner). */
	if (access(path, R_OK) < 0) {
		int e = errno;

		snprintf(why, whysize, "%s %s: %s", what, path, strerror(e));
		return -e;
	}
	return 0;
}

int read_file(const char *path, uint8_t **buf, size_t *len)
{
	struct stat st;
	uint8_t *b = NULL;
	size_t cap, n = 0;
	int fd, ret = 0;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st)) {
		ret = -errno;
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		ret = -EINVAL;
		goto out;
	}
	if ((uint64_t)st.st_size > READ_FILE_MAX) {
		ret = -EFBIG;
		goto out;
	}
	/* Exactly the size seen, not rounded up: push reads 32 MiB packs. */
	cap = (size_t)st.st_size + 1;
	b = malloc(cap);
	if (!b) {
		ret = -ENOMEM;
		goto out;
	}
	for (;;) {
		ssize_t r;

		/* The spare byte doubles as the probe for end of file, so a
		 * file that did not grow needs no realloc. */
		r = read(fd, b + n, cap - n);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			ret = -errno;
			goto out;
		}
		if (r == 0)
			break;
		n += (size_t)r;
		if (n == cap) {
			uint8_t *nb;

			if (n > READ_FILE_MAX) {
				ret = -EFBIG;
				goto out;
			}
			nb = buf_grow(b, &cap, n + 1, 1);
			if (!nb) {
				ret = -ENOMEM;
				goto out;
			}
			b = nb;
		}
	}
	b[n] = '\0';
	*buf = b;
	*len = n;
	b = NULL;
out:
	free(b);
	close(fd);
	return ret;
}

/*
 * A new or renamed directory entry is only durable once the directory
 * itself is fsynced.  Trailing slashes are ignored ("a/b/" -> "a"), a
 * bare name means the current directory.
 */
int fsync_parent_dir(const char *path)
{
	size_t n = strlen(path);
	char *dir;
	int fd, ret = 0;

	while (n > 1 && path[n - 1] == '/')
		n--;
	while (n > 0 && path[n - 1] != '/')
		n--;
	while (n > 1 && path[n - 1] == '/')
		n--;
	if (n == 0)
		dir = strdup(".");
	else
		dir = strndup(path, n);
	if (!dir)
		return -ENOMEM;
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	free(dir);
	if (fd < 0)
		return -errno;
	if (fsync(fd))
		ret = -errno;
	close(fd);
	return ret;
}

/* explicit_bzero is a store the optimiser must keep even when the buffer
 * is about to be freed or go out of scope. */
void secure_wipe(void *p, size_t n)
{
	if (p && n)
		explicit_bzero(p, n);
}

uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int mount_set_readahead(const char *mountpoint, unsigned int kb)
{
	/* From mountinfo, not stat(): stat of a FUSE mount would wait for
	 * the daemon that calls this before it serves. */
	FILE *f = fopen("/proc/self/mountinfo", "re");
	if (!f)
		return -errno;
	char line[8192], dev[32] = "";
	while (fgets(line, sizeof(line), f)) {
		char d[32], mp[4096];
		if (sscanf(line, "%*s %*s %31s %*s %4095s", d, mp) == 2 &&
		    !strcmp(mp, mountpoint))
			snprintf(dev, sizeof(dev), "%s", d);	/* the last wins */
	}
	fclose(f);
	if (!*dev)
		return -ENOENT;
	char path[128], val[32];
	snprintf(path, sizeof(path), "/sys/class/bdi/%s/read_ahead_kb", dev);
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	int n = snprintf(val, sizeof(val), "%u\n", kb);
	int err = write(fd, val, (size_t)n) == n ? 0 : -errno;
	close(fd);
	return err;
}
