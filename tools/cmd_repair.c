/*
 * cmd_repair.c - `tresor repair STORE --from REMOTE` (replace every
 * missing or damaged local pack with the remote's verified copy) and the
 * `--remote NAME` half of `tresor check` (does the remote hold what was
 * pushed to it).
 */
#include <curl/curl.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../remote/check_remote.h"
#include "../fs/damage.h"
#include "../remote/fetch.h"
#include "cli.h"
#include "progress.h"

static void print_line(void *arg, const char *line)
{
	const char *prefix = arg;
	if (!strncmp(line, "  ", 2))
		printf("%s\n", line);
	else
		printf("%s%s\n", prefix, line);
}

static void print_affects(void *arg, const char *line)
{
	(void)arg;
	printf("  affects %s\n", line);
}

/* The remote configured as name in st, and a connection to it, or exit. */
static struct remote *configured_remote(struct store *st, const char *dir,
					const char *name, struct remote_cfg *cfg)
{
	int err = remote_cfg_find(st->ix, name, cfg);
	if (err == -ENOENT)
		die(1, "store %s has no remote '%s' (see 'tresor remote list %s')",
		    dir, name, dir);
	if (err)
		die(1, "cannot read remote '%s' of store %s: %s", name, dir, strerror(-err));
	curl_global_init(CURL_GLOBAL_DEFAULT);
	return open_remote(cfg->url, &cfg->opt);
}

int cmd_check_remote(struct opts *o, struct store *st, uint64_t *problems)
{
	struct remote_cfg cfg;
	struct remote *r = configured_remote(st, o->pos[0], o->remote, &cfg);
	struct progress p;
	progress_start(&p, "check remote", 0);
	struct remote_check_result res;
	char prefix[600];
	snprintf(prefix, sizeof(prefix), "problem: store %s: ", o->pos[0]);
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	struct remote_check_opts co = {
		.read_data = o->read_data, .report = print_line, .arg = prefix,
		.progress = progress_cb, .parg = &p, .affected = damage_affected,
		.by_age = o->by_age, .max_age = o->max_age_s * 1000000000,
		.now = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec,
	};
	int err = check_remote(st, r, &cfg, &co, &res);
	progress_end(&p);
	if (err) {
		char msg[600];
		snprintf(msg, sizeof(msg), "%s", *remote_error(r) ? remote_error(r) : strerror(-err));
		die(1, "check of remote '%s' (%s) of store %s could not run: %s",
		    cfg.name, cfg.url, o->pos[0], msg);
	}
	remote_close(r);
	curl_global_cleanup();
	char how[128];
	if (o->by_age)
		snprintf(how, sizeof(how), "; %llu pack(s) due by age, %llu read and verified,"
			 " the others' sizes checked", (unsigned long long)res.packs_due,
			 (unsigned long long)res.packs_due_read);
	else
		snprintf(how, sizeof(how), "%s", o->read_data ? ", all read and verified" : " (sizes)");
	if (!o->json)
		printf("checked remote %s (%s): %llu pack(s), %llu metadata object(s), %llu image(s) of the index in %llu part(s)%s; %llu pack(s) not pushed yet: %llu problem(s)\n",
		       cfg.name, cfg.url, (unsigned long long)res.packs,
		       (unsigned long long)res.metas, (unsigned long long)res.images,
		       (unsigned long long)res.image_parts, how,
		       (unsigned long long)res.not_pushed, (unsigned long long)res.problems);
	*problems = res.problems;
	return 0;
}

int cmd_repair(struct opts *o)
{
	if (o->npos != 1 || !o->from)
		die(EXIT_USAGE, "usage: tresor repair STORE --from REMOTE");
	const char *dir = o->pos[0];
	struct store *st = open_store(o, dir);
	struct remote_cfg cfg;
	struct remote *r = configured_remote(st, dir, o->from, &cfg);
	int64_t *ids = NULL;
	size_t n = 0;
	int err = catalog_pack_list(st->ix, PACK_FINISHED, &ids, &n);
	if (err)
		die(1, "cannot list the packs of store %s: %s", dir, strerror(-err));
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	int64_t now = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
	struct progress p;
	progress_start(&p, "repair", n);
	uint64_t repaired = 0, failed = 0, checked = 0;
	size_t nok = 0;		/* ids[0..nok): the packs good now */
	for (size_t i = 0; i < n; i++) {
		uint8_t name[PACK_NAME_LEN];
		char hex[PACK_NAME_LEN * 2 + 1];
		if (catalog_pack_name(st->ix, ids[i], name))
			continue;
		hex_encode(name, PACK_NAME_LEN, hex);
		char *path = store_pack_path(st, name);
		int bad = path ? pack_verify_file(&st->keys, path, name) : -ENOMEM;
		free(path);
		checked++;
		progress_set(&p, i + 1, 0);
		if (!bad) {
			ids[nok++] = ids[i];	/* read whole and authenticated */
			continue;
		}
		uint64_t size = 0;
		catalog_pack_size(st->ix, ids[i], &size);
		uint64_t bytes = 0;
		int e = pack_fetch_install(r, &st->keys, st->dir, name, size, &bytes);
		const char *why = bad == -ENOENT ? "missing" : "damaged";
		if (!e) {
			store_pack_replaced(st, name);
			ids[nok++] = ids[i];
			repaired++;
			printf("repaired pack %s (%s here) from remote %s: %llu bytes\n", hex,
			       why, cfg.name, (unsigned long long)bytes);
		} else {
			failed++;
			printf("problem: store %s: pack %s is %s here and remote %s cannot replace it: %s\n",
			       dir, hex, why, cfg.name,
			       e == -EBADMSG ? "its copy fails verification too"
			       : e == -ENODATA ? "it does not have the pack"
			       : *remote_error(r) ? remote_error(r) : strerror(-e));
		}
		if (e)
			damage_affected(st->ix, ids[i], 0, 20, print_affects, NULL, NULL);
	}
	progress_end(&p);
	/* The packs read whole and authenticated, noted as check --read-data
	 * would, in one transaction at the end (none held while fetching);
	 * a failure only leaves them due. */
	int nerr = index_begin(st->ix);
	for (size_t i = 0; i < nok && !nerr; i++)
		nerr = catalog_pack_verified(st->ix, ids[i], now);
	if (!nerr)
		nerr = index_commit(st->ix);
	if (nerr)
		index_rollback(st->ix);
	free(ids);
	remote_close(r);
	curl_global_cleanup();
	store_close(st);
	printf("repair of store %s from %s: %llu pack(s) checked, %llu repaired, %llu could not be\n",
	       dir, cfg.name, (unsigned long long)checked, (unsigned long long)repaired,
	       (unsigned long long)failed);
	return failed ? 1 : 0;
}
