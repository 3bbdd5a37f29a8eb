/*
 * util.h - small helpers every module uses: logging, hex, careful I/O,
 * secret wiping, crash points for the torture test.  Logging goes to
 * stderr; its level threshold (set by log_set_level, or from
 * TRESOR_LOG=debug|info|warn|error on first use) and the armed crash point
 * are the process-wide mutable state here.
 */
#ifndef TRESOR_UTIL_H
#define TRESOR_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

enum log_level { LOG_ERR = 0, LOG_WARN = 1, LOG_INFO = 2, LOG_DEBUG = 3 };

/* Print one line "tresor: <level>: <msg>" to stderr (level is error,
 * warn, info or debug), if level <= the threshold set by log_set_level
 * (default LOG_INFO, or TRESOR_LOG).  With TRESOR_LOG_TIME=1 in the
 * environment the line starts with log_stamp's time.  Thread-safe;
 * preserves errno. */
void tlog(enum log_level level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
void log_set_level(enum log_level level);
/* "2026-12-06T21:45:00.123Z " (UTC, real clock) into buf when
 * TRESOR_LOG_TIME=1 is set (the scheduling daemon sets it for its log
 * and its mount processes), else "". */
void log_stamp(char *buf, size_t size);

/* Hex-encode n bytes into out (2n+1 bytes incl. NUL). */
void hex_encode(const uint8_t *in, size_t n, char *out);
/* Decode exactly 2n hex chars (either case) into n bytes; -EINVAL on bad
 * input, out untouched.  Characters after the first 2n are ignored. */
int hex_decode(const char *in, uint8_t *out, size_t n);

/* pread/pwrite that loop over short transfers; return 0 or -errno.
 * pread_full returns -EIO if the file ends early. */
int pread_full(int fd, void *buf, size_t len, off_t off);
int pwrite_full(int fd, const void *buf, size_t len, off_t off);

/* Set the kernel's read-ahead of the FUSE mount at mountpoint (an
 * absolute path without symlinks) to kb KiB: the kernel starts FUSE
 * mounts at 128 KiB whatever max_readahead says.  Needs root; -errno. */
int mount_set_readahead(const char *mountpoint, unsigned int kb);

/* Write a whole file atomically (tmp + fsync + rename + fsync dir) with the
 * given mode.  Returns 0 or -errno. */
int write_file_atomic(const char *path, const void *buf, size_t len,
		      mode_t mode);
/* Read a whole (small, at most 64 MiB: else -EFBIG) regular file into a
 * malloc'd buffer; *len set.  The buffer has a NUL after the last byte,
 * not counted in *len.  -errno. */
int read_file(const char *path, uint8_t **buf, size_t *len);
/*
 * A file holding a secret (a passphrase, credentials, a private key, a
 * netrc) must be a regular file that only its owner may read or write:
 * 0, else -errno and one line in why ("passphrase file FILE is readable by
 * others: chmod 600 FILE (its mode is 0644)").  The one rule every entry point applies (the
 * CLI, mount.tresor through it, the daemon, the remote backends).  what
 * names the file's role ("passphrase file", "credentials file").
 */
int secret_file_check(const char *path, const char *what, char *why, size_t whysize);

/* fsync the directory holding path. */
int fsync_parent_dir(const char *path);

/* Overwrite a secret so the compiler cannot drop the store. */
void secure_wipe(void *p, size_t n);

/* Test hook for the crash torture (tests/integration/test_torture.py):
 * when the environment holds TRESOR_CRASH_AT=NAME[:N], the N-th (default
 * first) call of crash_point(NAME) kills the process with SIGKILL, as a
 * kill -9 at that exact instant would.  One call per interesting site
 * (pack sealing, index commit, GC rewrite, push); unset, it costs one
 * atomic load. */
void crash_point(const char *name);

/* Monotonic time in nanoseconds. */
uint64_t now_ns(void);

/* Little-endian encode/decode. */
static inline void put_le32(uint8_t *p, uint32_t v)
{
	p[0] = v; p[1] = v >> 8; p[2] = v >> 16; p[3] = v >> 24;
}
static inline uint32_t get_le32(const uint8_t *p)
{
	return p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}
static inline void put_le64(uint8_t *p, uint64_t v)
{
	put_le32(p, (uint32_t)v);
	put_le32(p + 4, (uint32_t)(v >> 32));
}
static inline uint64_t get_le64(const uint8_t *p)
{
	return get_le32(p) | (uint64_t)get_le32(p + 4) << 32;
}

#endif
