/*
 * cli.c - what every `tresor` command shares: option parsing, the
 * passphrase, opening a store or its index, finding a volume or a
 * snapshot, dying with a message, printing JSON strings and local times.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli.h"
#include "config.h"

void die(int code, const char *fmt, ...)
{
	char msg[4096], stamp[40];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	/* one stdio call: a daemon's threads do not interleave lines */
	log_stamp(stamp, sizeof(stamp));
	fprintf(stderr, "%stresor: %s\n", stamp, msg);
	exit(code);
}


static long parse_size(const char *s, const char *what)
{
	char *end;
	errno = 0;
	long long v = strtoll(s, &end, 10);
	if (errno || end == s || v < 0)
		die(EXIT_USAGE, "%s: not a number: %s", what, s);
	switch (*end) {
	case 'k': case 'K': v <<= 10; end++; break;
	case 'm': case 'M': v <<= 20; end++; break;
	}
	if (*end)
		die(EXIT_USAGE, "%s: not a size: %s", what, s);
	return (long)v;
}

/* A retention count: a whole number, or -1 for unlimited. */
static int parse_count(const char *s, const char *what)
{
	char *end;
	long v = strtol(s, &end, 10);
	if (end == s || *end || v < -1 || v > 1000000)
		die(EXIT_USAGE, "%s: not a count (a whole number, or -1 for all): %s",
		    what, s);
	return (int)v;
}

/* "5%" or "5": a share of 1..100 percent. */
static int parse_percent(const char *s, const char *what)
{
	char *end;
	long v = strtol(s, &end, 10);
	if (end != s && *end == '%')
		end++;
	if (end == s || *end || v < 1 || v > 100)
		die(EXIT_USAGE, "%s: not a percentage from 1%% to 100%%: %s", what, s);
	return (int)v;
}

void parse_opts(int argc, char **argv, struct opts *o)
{
	static const struct option lo[] = {
		{ "passphrase-file", required_argument, 0, 'p' },
		{ "json", no_argument, 0, 'j' },
		{ "read-data", optional_argument, 0, 'r' },
		{ "chunk-min", required_argument, 0, 1 },
		{ "chunk-avg", required_argument, 0, 2 },
		{ "chunk-max", required_argument, 0, 3 },
		{ "kdf-log2n", required_argument, 0, 4 },
		{ "time", required_argument, 0, 5 },
		{ "dry-run", no_argument, 0, 6 },
		{ "keep-last", required_argument, 0, 10 },
		{ "keep-hourly", required_argument, 0, 11 },
		{ "keep-daily", required_argument, 0, 12 },
		{ "keep-weekly", required_argument, 0, 13 },
		{ "keep-monthly", required_argument, 0, 14 },
		{ "keep-yearly", required_argument, 0, 15 },
		{ "keep-within", required_argument, 0, 16 },
		{ "endpoint", required_argument, 0, 20 },
		{ "region", required_argument, 0, 21 },
		{ "path-style", no_argument, 0, 22 },
		{ "virtual-hosted", no_argument, 0, 23 },
		{ "ca-file", required_argument, 0, 24 },
		{ "credentials-file", required_argument, 0, 25 },
		{ "ssh-key", required_argument, 0, 26 },
		{ "known-hosts", required_argument, 0, 27 },
		{ "netrc", required_argument, 0, 28 },
		{ "grace", required_argument, 0, 40 },
		{ "object-lock-days", required_argument, 0, 41 },
		{ "object-lock-mode", required_argument, 0, 42 },
		{ "jobs", required_argument, 0, 43 },
		{ "limit-upload", required_argument, 0, 44 },
		{ "image-every", required_argument, 0, 45 },
		{ "lazy", no_argument, 0, 50 },
		{ "full", no_argument, 0, 51 },
		{ "remote", required_argument, 0, 52 },
		{ "from", required_argument, 0, 53 },
		{ "takeover", no_argument, 0, 54 },
		{ "chain", required_argument, 0, 55 },
		{ "set", required_argument, 0, 56 },
		{ "note", required_argument, 0, 57 },
		{ "no-check", no_argument, 0, 58 },
		{ "new-passphrase-file", required_argument, 0, 59 },
		{ "max-age", required_argument, 0, 60 },
		{ "name", required_argument, 0, 61 },
		{ "scheduled", no_argument, 0, 62 },
		{ "help", no_argument, 0, 'h' },
		{ 0, 0, 0, 0 },
	};
	memset(o, 0, sizeof(*o));
	optind = 1;
	int c;
	while ((c = getopt_long(argc, argv, "hfo:", lo, NULL)) != -1) {
		switch (c) {
		case 'p': o->passfile = optarg; break;
		case 'j': o->json = 1; break;
		case 'r':
			o->read_data = 1;
			if (optarg)
				o->read_pct = parse_percent(optarg, "--read-data");
			break;
		case 'f': o->foreground = 1; break;
		case 'o': o->mount_opts = optarg; break;
		case 1: o->chunk_min = parse_size(optarg, "--chunk-min"); break;
		case 2: o->chunk_avg = parse_size(optarg, "--chunk-avg"); break;
		case 3: o->chunk_max = parse_size(optarg, "--chunk-max"); break;
		case 4: o->kdf_log2n = parse_size(optarg, "--kdf-log2n"); break;
		case 5: o->time = optarg; break;
		case 6: o->dry_run = 1; break;
		case 10: o->keep.last = parse_count(optarg, "--keep-last"); break;
		case 11: o->keep.hourly = parse_count(optarg, "--keep-hourly"); break;
		case 12: o->keep.daily = parse_count(optarg, "--keep-daily"); break;
		case 13: o->keep.weekly = parse_count(optarg, "--keep-weekly"); break;
		case 14: o->keep.monthly = parse_count(optarg, "--keep-monthly"); break;
		case 15: o->keep.yearly = parse_count(optarg, "--keep-yearly"); break;
		case 20: o->r_endpoint = optarg; break;
		case 21: o->r_region = optarg; break;
		case 22: o->r_path_style = 1; break;
		case 23: o->r_path_style = -1; break;
		case 24: o->r_ca_file = optarg; break;
		case 25: o->r_credentials_file = optarg; break;
		case 26: o->r_ssh_key = optarg; break;
		case 27: o->r_known_hosts = optarg; break;
		case 28: o->r_netrc = optarg; break;
		case 40: o->r_grace = optarg; break;
		case 41: o->r_lock_days = optarg; break;
		case 42: o->r_lock_mode = optarg; break;
		case 43: o->jobs = optarg; break;
		case 44: o->limit_upload = optarg; break;
		case 45: o->image_every = optarg; break;
		case 50: o->lazy = 1; break;
		case 51: o->full = 1; break;
		case 52: o->remote = optarg; break;
		case 53: o->from = optarg; break;
		case 54: o->takeover = 1; break;
		case 55: o->chain = optarg; break;
		case 56: o->set = optarg; break;
		case 57: o->note = optarg; break;
		case 58: o->no_check = 1; break;
		case 59: o->new_passfile = optarg; break;
		case 60:
			if (config_parse_duration(optarg, &o->max_age_s))
				die(EXIT_USAGE, "--max-age: not a duration like 30d, 2w or 12h: %s",
				    optarg);
			o->by_age = 1;
			break;
		case 61: o->snap_name = optarg; break;
		case 62: o->scheduled = 1; break;
		case 'h': o->help = 1; break;
		case 16:
			if (retention_parse_duration(optarg, &o->keep.within_ns))
				die(EXIT_USAGE, "--keep-within: not a duration like 30d or 1y6m: %s",
				    optarg);
			break;
		default:
			fputs(usage_text, stderr);
			exit(EXIT_USAGE);
		}
		/* Options may follow positional arguments. */
	}
	for (int i = optind; i < argc; i++) {
		if (o->npos == 16)
			die(EXIT_USAGE, "too many arguments");
		o->pos[o->npos++] = argv[i];
	}
}

/* Read a line from the terminal without echo. */
static char *prompt_tty(const char *msg)
{
	FILE *tty = fopen("/dev/tty", "r+");
	if (!tty)
		return NULL;
	struct termios old, noecho;
	int have = tcgetattr(fileno(tty), &old) == 0;
	if (have) {
		noecho = old;
		noecho.c_lflag &= ~ECHO;
		tcsetattr(fileno(tty), TCSAFLUSH, &noecho);
	}
	fputs(msg, tty);
	fflush(tty);
	char *line = NULL;
	size_t cap = 0;
	ssize_t n = getline(&line, &cap, tty);
	if (have)
		tcsetattr(fileno(tty), TCSAFLUSH, &old);
	fputc('\n', tty);
	fclose(tty);
	if (n < 0) {
		free(line);
		return NULL;
	}
	line[strcspn(line, "\r\n")] = 0;
	return line;
}

/* A passphrase file's first line (or exit): owner-only, as everywhere. */
static char *passphrase_from_file(const char *path, const char *via)
{
	char why[PATH_MAX * 2 + 100];
	if (secret_file_check(path, "passphrase file", why, sizeof(why)))
		die(1, "%s%s", why, via);
	uint8_t *buf;
	size_t len;
	int err = read_file(path, &buf, &len);
	if (err)
		die(1, "cannot read passphrase file %s%s: %s", path, via, strerror(-err));
	char *pass = malloc(len + 1);
	if (!pass)
		die(1, "out of memory");
	memcpy(pass, buf, len);
	pass[len] = 0;
	secure_wipe(buf, len);
	free(buf);
	pass[strcspn(pass, "\r\n")] = 0;
	return pass;
}

/* The first line a command prints (a password manager, a secret store):
 * run by /bin/sh, its stdin and stderr those of tresor.  Exit if it fails. */
static char *passphrase_from_command(const char *cmd)
{
	fflush(NULL);
	FILE *f = popen(cmd, "r");
	if (!f)
		die(1, "TRESOR_PASSPHRASE_COMMAND: cannot run it: %s", strerror(errno));
	char *line = NULL;
	size_t cap = 0;
	ssize_t n = getline(&line, &cap, f);
	/* the rest is not read: drain it so the command is not killed by SIGPIPE */
	char sink[4096];
	while (fread(sink, 1, sizeof(sink), f) > 0)
		;
	secure_wipe(sink, sizeof(sink));
	int st = pclose(f);
	if (st == -1 || !WIFEXITED(st) || WEXITSTATUS(st)) {
		if (line)
			secure_wipe(line, cap);
		free(line);
		if (st != -1 && WIFEXITED(st))
			die(1, "TRESOR_PASSPHRASE_COMMAND failed (exit code %d); no passphrase",
			    WEXITSTATUS(st));
		die(1, "TRESOR_PASSPHRASE_COMMAND failed (killed by a signal); no passphrase");
	}
	if (n < 0) {
		free(line);
		return strdup("");	/* refused below as empty */
	}
	line[strcspn(line, "\r\n")] = 0;
	return line;
}

/* The passphrase, from the file, the environment, a command or a prompt
 * (twice when creating).  Never from argv. */
char *get_passphrase(const struct opts *o, int confirm, const char *store)
{
	char *pass = NULL;
	/* Taken out of the environment in any case, and its bytes wiped where
	 * they are: /proc/PID/environ of a long-lived daemon shows them. */
	char *envpass = getenv("TRESOR_PASSPHRASE");
	if (envpass) {
		char *e = envpass;
		envpass = strdup(e);
		secure_wipe(e, strlen(e));
		unsetenv("TRESOR_PASSPHRASE");
		if (!envpass)
			die(1, "out of memory");
	}
	const char *envfile = getenv("TRESOR_PASSPHRASE_FILE");
	const char *envcmd = getenv("TRESOR_PASSPHRASE_COMMAND");
	if (envfile && !*envfile)
		envfile = NULL;
	if (envcmd && !*envcmd)
		envcmd = NULL;
	if (o->passfile) {
		pass = passphrase_from_file(o->passfile, "");
	} else if (envfile) {
		pass = passphrase_from_file(envfile, " (TRESOR_PASSPHRASE_FILE)");
	} else if (envcmd) {
		pass = passphrase_from_command(envcmd);
	} else if (envpass) {
		pass = envpass;
		envpass = NULL;
	} else if (isatty(STDIN_FILENO)) {
		char msg[PATH_MAX + 64];
		snprintf(msg, sizeof(msg), "Passphrase for %s: ", store);
		pass = prompt_tty(msg);
		if (pass && confirm) {
			char *again = prompt_tty("Repeat passphrase: ");
			if (!again || strcmp(again, pass))
				die(1, "passphrases do not match; store %s not created", store);
			secure_wipe(again, strlen(again));
			free(again);
		}
	} else {
		die(EXIT_USAGE, "no passphrase for %s: use --passphrase-file FILE, "
		    "TRESOR_PASSPHRASE_FILE, TRESOR_PASSPHRASE_COMMAND or TRESOR_PASSPHRASE, "
		    "or run on a terminal", store);
	}
	if (envpass) {
		secure_wipe(envpass, strlen(envpass));
		free(envpass);
	}
	if (!pass)
		die(1, "no passphrase read for %s", store);
	if (!*pass)
		die(1, "empty passphrase for %s", store);
	return pass;
}

char *get_new_passphrase(const struct opts *o, const char *store)
{
	char *pass = NULL;
	if (o->new_passfile) {
		pass = passphrase_from_file(o->new_passfile, " (--new-passphrase-file)");
	} else if (isatty(STDIN_FILENO)) {
		char msg[PATH_MAX + 64];
		snprintf(msg, sizeof(msg), "New passphrase for %s: ", store);
		pass = prompt_tty(msg);
		char *again = pass ? prompt_tty("Repeat new passphrase: ") : NULL;
		if (!again || strcmp(again, pass))
			die(1, "passphrases do not match; the passphrase of %s is unchanged", store);
		secure_wipe(again, strlen(again));
		free(again);
	} else {
		die(EXIT_USAGE, "no new passphrase for %s: use --new-passphrase-file FILE, or run on a terminal",
		    store);
	}
	if (!pass || !*pass)
		die(1, "empty new passphrase for %s; the passphrase is unchanged", store);
	return pass;
}

void free_passphrase(char *p)
{
	secure_wipe(p, strlen(p));
	free(p);
}

/* Open the store or exit with a message that says what to do. */
struct store *open_store(const struct opts *o, const char *dir)
{
	char *pass = get_passphrase(o, 0, dir);
	struct store *st;
	int err = store_open(dir, pass, strlen(pass), &st);
	free_passphrase(pass);
	switch (err) {
	case 0:
		return st;
	case -ENOENT:
		die(EXIT_NO_STORE, "%s is not a tresor store (no key file or index); create one with 'tresor init %s'",
		    dir, dir);
	case -EKEYREJECTED:
		die(EXIT_PASSPHRASE, "wrong passphrase for store %s", dir);
	case -EPROTONOSUPPORT:
		die(1, "store %s was written by a newer tresor; upgrade tresor", dir);
	case -EBADMSG:
	case -EUCLEAN:
		die(1, "store %s is damaged (key file or index unreadable); run 'tresor check %s'",
		    dir, dir);
	default:
		die(1, "cannot open store %s: %s", dir, strerror(-err));
	}
}

/* Open only the index, for commands that need no key. */
struct index *open_index(const char *dir)
{
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/%s", dir, STORE_INDEX_FILE);
	struct index *ix;
	int err = access(path, F_OK) ? -ENOENT : index_open(path, 0, &ix);
	if (err == -ENOENT)
		die(EXIT_NO_STORE, "%s is not a tresor store (no index); create one with 'tresor init %s'",
		    dir, dir);
	if (err)
		die(1, "cannot open the index of store %s: %s", dir, strerror(-err));
	int64_t ver;
	err = index_meta_get(ix, "format_version", &ver);
	if (err)
		die(1, "store %s is damaged: its index has no format version", dir);
	if (ver > STORE_FORMAT_VERSION)
		die(1, "store %s was written by a newer tresor (format %lld); upgrade tresor",
		    dir, (long long)ver);
	return ix;
}

void json_fstr(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			fprintf(f, "\\%c", *s);
		else if ((unsigned char)*s < 0x20)
			fprintf(f, "\\u%04x", *s);
		else
			fputc(*s, f);
	}
	fputc('"', f);
}

void json_str(const char *s)
{
	json_fstr(stdout, s);
}

void cli_iso_time(time_t t, char *buf, size_t size)
{
	struct tm tm;
	localtime_r(&t, &tm);
	strftime(buf, size, "%Y-%m-%dT%H:%M:%S%z", &tm);
}

void find_volume(struct index *ix, const char *dir, const char *name,
		 struct volume_info *vi)
{
	int err = ns_volume_find(ix, name, vi);
	if (err == -ENOENT)
		die(1, "store %s has no volume '%s' (see 'tresor volume list %s')",
		    dir, name, dir);
	if (err)
		die(1, "cannot read volume '%s' of store %s: %s", name, dir,
		    strerror(-err));
}

void find_snapshot(struct index *ix, const char *dir,
		   const struct volume_info *vi, const char *name,
		   struct snapshot_info *si)
{
	int err;
	if (!strcmp(name, "latest")) {
		struct snapshot_info *all;
		size_t n;
		err = ns_snapshot_list(ix, vi->id, &all, &n);
		if (!err && n) {
			/* The newest by time: imports can be older than others. */
			size_t best = 0;
			for (size_t i = 1; i < n; i++)
				if (all[i].time >= all[best].time)
					best = i;
			*si = all[best];
		} else if (!err) {
			err = -ENOENT;
		}
		free(all);
	} else {
		err = ns_snapshot_find(ix, vi->id, name, si);
	}
	if (err == -ENOENT)
		die(1, "volume '%s' of store %s has no snapshot '%s' (see 'tresor snapshot list %s %s')",
		    vi->name, dir, name, dir, vi->name);
	if (err)
		die(1, "cannot read snapshots of volume '%s' in %s: %s", vi->name,
		    dir, strerror(-err));
}
